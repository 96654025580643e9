"""The live waiting room: per-campaign runners, pools, the wire protocol, fan-out to sockets."""
