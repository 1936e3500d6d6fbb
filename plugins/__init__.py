"""Host plug-ins (Blender, DaVinci Resolve): thin front ends that talk to the V2A daemon."""
