"""The application on top of the three packages: the ``micwire`` command
(:mod:`micwire.app.cli`, its options in :mod:`micwire.app.options`), how a process runs
(:mod:`micwire.app.runtime`, shared with the receiver's workers, :mod:`micwire.app.worker`)
and the demo (:mod:`micwire.app.demo`)."""
