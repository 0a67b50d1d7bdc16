"""One module per view; each has render(), run by the app as a page."""
