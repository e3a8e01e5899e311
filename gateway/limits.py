"""How many bytes the edge holds for one request, response or connection.

Every byte cap of the edge in one place, because they only make sense side by side:
what the buffer filter admits, what the transcoder may buffer, what one connection may
make Envoy buffer, and how large a response Envoy answers by itself may be.
"""

from __future__ import annotations

#: What one connection (downstream or upstream) may make Envoy buffer (edge-proxy guide);
#: filters that need whole bodies (buffer, transcoder) raise it for their own streams.
CONNECTION_BUFFER_BYTES = 32 * 1024

# What the transcoder may buffer per request. It holds a whole unary request or response to
# convert it, and without these limits the buffer is the stream's buffer limit: 64 KiB for
# HTTP/2 clients (initial_stream_window_size, gateway/listeners.py), 1 MiB over HTTP/1.1.
# So the same REST call answered 200 over HTTP/1.1 and, once its JSON passed 64 KiB (a
# page of 30 long posts does), 500 "Response not transcoded because the transcoder's
# internal buffer ..." over HTTP/2. Both limits are now explicit and the same for every protocol.
# * Responses: a full page of the largest lists (BatchGetPosts/BatchGetUsers of 500,
#   ListFollowers of 1000) is some 100-600 KB of JSON; 4 MiB leaves several times that
#   while still bounding what one response can make the edge hold.
# * Requests: the transcoder converts a JSON body as it arrives and holds only what it has
#   not parsed yet, so for JSON this bounds that backlog (about one read), not the body; it
#   is the whole body only for unary google.api.HttpBody requests (none yet). 1 MiB, the
#   HTTP/1.1 default, is far above the largest body a client sends (a 5,000-character
#   post: ~60 KB as JSON at worst). What really caps a JSON body is the service's gRPC
#   receive limit (4 MiB), answered RESOURCE_EXHAUSTED, i.e. 429.
MAX_REQUEST_BODY_BYTES = 1024 * 1024
# The edge-wide cap on a request body, enforced by the buffer filter before jwt_authn and
# the transcoder: larger bodies get 413 and never reach a service (a 10 MB JSON body used
# to reach it and come back as the gRPC receive limit's RESOURCE_EXHAUSTED, i.e. 429).
# The transcoder's max_request_body_size cannot do this: it bounds only what it has not
# parsed yet, so over HTTP/2 a JSON body of any size streams through it. The largest body
# a client sends is a 5,000-character post (~60 KB as JSON at worst); 256 KiB leaves room.
# Streaming routes are exempt (a stream is not one body; their messages are bounded by
# the services' gRPC receive limit).
MAX_EDGE_REQUEST_BYTES = 256 * 1024
#: What the transcoder may buffer of one response (see MAX_REQUEST_BODY_BYTES above).
MAX_RESPONSE_BODY_BYTES = 4 * 1024 * 1024
#: Direct responses are capped at 4 KiB by default; the OpenAPI document is larger.
MAX_DIRECT_RESPONSE_BYTES = 4 * 1024 * 1024
