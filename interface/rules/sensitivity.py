"""Sensitive records: which categories a document falls in, and what a release must leave out.

Pure. Rules are YAML (``rules/sensitivity.yaml``): categories (psychotherapy notes, substance-use
disorder records under 42 CFR Part 2, HIV, genetic, reproductive health; the hospital adds its
own), each decided from the document's confidentiality code (TXA-18: HL7 table 0272 / v3
Confidentiality ``R``, ``V``...) and its type (TXA-2).

* :func:`classify` ``(document_type, confidentiality_code, rules=None) -> frozenset[str]``: the
  categories (ids) a document falls in.
* :func:`excluded_from_release` ``(categories, authorized_categories, rules=None) ->
  list[(category, reason)]``: the categories an authorization does not name, each with the
  reason in words.
"""

from __future__ import annotations
