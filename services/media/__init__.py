"""The media service: uploads, safe processing into WebP variants, unguessable URLs."""
