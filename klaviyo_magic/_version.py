"""The package version, in one place: read by the package root, the HTTP client's User-Agent, the CLI and the build."""

__version__ = "0.1.0"
