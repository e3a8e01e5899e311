"""The post service: posts, comments, likes, shares and saves."""
