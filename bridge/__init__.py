"""V2A Bridge, the host side: the ZeroMQ client, the OTIO timeline planner and the `v2a` command."""
