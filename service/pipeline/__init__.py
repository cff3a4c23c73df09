"""Per-stream analysis: fan frames out to detectors and run the defect lifecycle."""
