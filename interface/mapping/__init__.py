"""The mapping language: spec, paths, reader, targets, the batch fast path, compiler,
loader, transforms, code tables and the ``tests:`` cases beside each mapping. Pure.
"""
