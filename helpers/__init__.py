"""Helper library of the ML security, privacy and fairness workbook.

One concept per module (see CONTRIBUTING.md, "Layout" and "Helper conventions"): ``checks``
(argument checks), ``data`` (shipped datasets), ``runtime`` (seeds, device, results, atomic
writes), ``models`` (shared torch models, training and the trained-model cache), ``plots``
(figure helpers), and one module per notebook topic.
"""
