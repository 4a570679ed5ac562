"""Sample data shipped with flakebot (see README.md here)."""
