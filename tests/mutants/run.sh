#!/bin/sh
# Mutation testing of the auth core: how many of cargo-mutants' mutants of server/src/auth the
# conformance catalogue catches, and how many only the server's own tests catch. Not part of CI
# (hours on two cores). Usage and outcomes: tests/mutants/README.md.
exec python3 "$(dirname "$0")/run.py" "$@"
