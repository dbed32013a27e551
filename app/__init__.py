"""The application on top of the three packages: the ``micwire`` command
(:mod:`micwire.app.cli`) and the demo (:mod:`micwire.app.demo`)."""
