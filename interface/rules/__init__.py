"""Rules as data, run by small interpreters: completeness (what a document must carry)."""
