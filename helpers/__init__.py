"""Helper library of the ML security, privacy and fairness workbook.

One concept per module (see DESIGN.md): ``data`` (shipped datasets), ``runtime`` (seeds, device,
results), ``models`` (shared torch models and training), and one module per notebook topic.
"""
