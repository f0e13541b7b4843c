"""One-off developer tools (not imported by the engine or the app)."""
