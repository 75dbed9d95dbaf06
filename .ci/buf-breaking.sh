#!/usr/bin/env bash
# Fails when proto/ breaks a client built from an earlier version of it on main: runs
# `buf breaking` (rules in buf.yaml) against each distinct earlier version of proto/ along the
# first-parent history of HEAD (on main: the states main has been in, merges of branches counting
# as one step; a branch's intermediate states are not versions anyone was given).
#
# Why every earlier version and not just HEAD~1: a submission of several commits may change the
# proto in one and not in the last; and checking each version costs about half a second.
# No earlier version (a first commit, or proto/ just created): nothing to compare, says so.
# A shallow clone is deepened first; if that is impossible, the versions present are checked and
# the script says the history was incomplete.
# An intentional break (say, dropping a v1 API long replaced) is declared in buf.yaml
# (`breaking: ignore:` or `ignore_only:`), where review sees it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
  echo "buf breaking: not a git checkout with commits; nothing to compare against"
  exit 0
fi
if [ "$(git rev-parse --is-shallow-repository)" = "true" ]; then
  git fetch --quiet --unshallow 2>/dev/null \
    || echo "buf breaking: shallow clone that cannot be deepened; checking the versions present" >&2
fi
declare -A seen=()
# The committed proto/ is the one being checked, unless the work tree changed it (a local run).
if git diff --quiet HEAD -- proto && current=$(git rev-parse -q --verify HEAD:proto); then
  seen[$current]=1
fi
checked=0
for commit in $(git rev-list --first-parent HEAD); do
  tree=$(git rev-parse -q --verify "$commit:proto" 2>/dev/null || true)
  [ -z "$tree" ] && continue
  [ -n "${seen[$tree]:-}" ] && continue
  seen[$tree]=1
  echo "buf breaking against proto/ as of $(git log -1 --format='%h %s' "$commit" | cut -c1-80)"
  # subdir=proto: earlier commits may have no buf.yaml; their module root is proto/ all the same.
  buf breaking --against ".git#ref=$commit,subdir=proto"
  checked=$((checked + 1))
done
if [ "$checked" -eq 0 ]; then
  echo "buf breaking: no earlier version of proto/ on this history; nothing to compare against"
else
  echo "buf breaking: compatible with $checked earlier version(s) of proto/"
fi
