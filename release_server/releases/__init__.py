"""Components, releases, artifacts, channels and changelogs."""
