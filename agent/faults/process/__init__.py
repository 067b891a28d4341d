"""Process faults: kill and stop, with the matching and safety rules they share."""
