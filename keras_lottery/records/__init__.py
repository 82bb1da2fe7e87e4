"""What a search leaves on disk: its record (:mod:`~keras_lottery.records.record`), its
run directory with one commit per round (:mod:`~keras_lottery.records.checkpoint`), the
fingerprint that identifies it (:mod:`~keras_lottery.records.fingerprint`) and atomic
file writes (:mod:`~keras_lottery.records.files`)."""

from keras_lottery.records.record import LotteryRecord, RoundRecord

__all__ = ["LotteryRecord", "RoundRecord"]
