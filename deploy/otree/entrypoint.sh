#!/bin/sh
# oTree keeps its SQLite database as db.sqlite3 in the folder it runs in: run in /data (the
# volume), with the project's files copied there afresh at each start.
set -e
cp -R /opt/otree-project/. /data/
cd /data
exec otree prodserver 0.0.0.0:8000
