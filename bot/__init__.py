"""flakebot: tells flaky test failures from real ones on GitHub and GitLab."""

__version__ = "0.1.0"
