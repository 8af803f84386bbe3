"""Pipeline folders: one sub-package per upstream source, each declaring ``SOURCE``."""
