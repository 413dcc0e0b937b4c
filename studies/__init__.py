"""Study definitions shipped with ecgsearch (TOML data; see README "Study definitions")."""
