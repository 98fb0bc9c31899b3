"""Pilot (shadow) mode, pure: which outputs a piloted workflow withholds, and how its proposals
compare with what staff actually did (agreement per workflow, kind and rule version, and the
staff minutes the agreed items would have saved)."""
