"""The Blender VSE add-on (`v2a_bridge/`) and the script that builds its installable zip."""
