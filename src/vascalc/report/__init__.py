"""Writers: result.json, CSV tables, label maps and QC pictures."""
