"""What the sandbox knows about Blubber files beyond their translation (sandbox/isvc/blubber.py):
the rules of each blubber version (`versions`), the schema checks that keep every field data
(`schema`), the stand-ins for production's base images (`bases`), local copies for builders that
fetch (`mirrors`) and the coverage check over a checkout (`check`)."""
