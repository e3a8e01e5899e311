"""The web app's static file server (`socialmesh serve web`): web/out behind the edge."""
