"""What a study is: its definition and schema, settings, search space, proposals, rungs, workspace."""
