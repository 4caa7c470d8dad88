"""nbval settings for the notebooks: compare only what is deterministic.

``make test`` runs ``pytest --nbval-lax``: every cell must execute without error, and the cells
marked ``# NBVAL_CHECK_OUTPUT`` must print what the committed notebook shows. Progress bars,
warnings and timings go to stderr, which is never compared; rich outputs (figures, HTML tables)
are not compared either, only their text.
"""


def pytest_collectstart(collector):
    if getattr(collector, "fspath", None) and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "image/png", "image/svg+xml", "text/html",
                                   "application/vnd.jupyter.widget-view+json")
