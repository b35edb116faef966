"""HTTP: the JSON API and the lobby."""
