"""Model runners: each turns a Sequence into TokenDeltas on one model."""
