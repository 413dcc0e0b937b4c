"""ECG data: readers for real file formats, labels, preprocessing and the preprocessed cache."""

from ecgnet.data.record import Record, RecordError

__all__ = ["Record", "RecordError"]
