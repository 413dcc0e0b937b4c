"""Signals of WFDB records stored as ``.dat`` files (formats 16, 212, 80, ...), read by ``wfdb``.

PhysioNet databases and WFDB exports keep their samples in ``.dat`` files in one of many
binary formats; the ``wfdb`` package decodes them all. Only the signal is taken from it: the
header is still parsed by ``ecgnet.data.cinc.parse_header``, because ``wfdb`` rejects real
Challenge headers (Georgia's record line names ``E07500.mat``) and one parser keeps comments
(``#Dx``, ``#Age``, ``#Sex``) and units read the same way for every record.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ecgnet.data.record import RecordError

__all__ = ["read_wfdb_signal"]


def read_wfdb_signal(header_path: Path) -> np.ndarray:
    """The physical signal (leads, samples) of the record whose header is ``header_path``, in header units.

    Invalid samples (WFDB's reserved value) come back as NaN, which ``check_signal`` rejects.
    """
    try:
        with warnings.catch_warnings():
            # wfdb's own use of deprecated pandas calls would print on every worker's first record.
            warnings.simplefilter("ignore", DeprecationWarning)
            import wfdb  # imported here: it takes a noticeable time and .mat records never need it

            record = wfdb.rdrecord(str(header_path.with_suffix("")), physical=True)
    except FileNotFoundError as exc:
        raise RecordError(exc.filename or header_path, "signal file is missing") from None
    except Exception as exc:  # wfdb raises many types for a damaged or unsupported file
        raise RecordError(header_path, f"unreadable WFDB record ({type(exc).__name__}: {exc})") from None
    if record.p_signal is None:
        raise RecordError(header_path, "unreadable WFDB record (no signal)")
    return np.asarray(record.p_signal).T
