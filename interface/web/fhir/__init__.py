"""A read-only FHIR R4 face on the chart and the document index, under ``/fhir``.

Every resource is built from the models of ``fhir.resources`` (its ``R4B`` package: the fields
used here are the same in R4 4.0.1), constructed by :mod:`interface.web.fhir.model` and validated
in the tests; docs/fhir.md lists the mappings.
One module per resource; :mod:`interface.web.fhir.router` puts them together.
"""
