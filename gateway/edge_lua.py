"""The edge's Lua filter: the script Envoy runs on every request before jwt_authn.

Three jobs that no Envoy filter does as the edge needs them (see `EDGE_LUA`): the
`Bearer` scheme's case, unknown JSON body fields, and weak ETags with 304s. The script
itself is fixed text; `lua_source` prepends what it needs from the contract.
"""

from __future__ import annotations

from .body_fields import Schemas, lua_table

# The edge's Lua filter (one script, three jobs):
# * RFC 7235: the auth scheme is case-insensitive, and the services accept any case; the
#   jwt_authn extractor only knows an exact `value_prefix`. This rewrites the scheme of a
#   bearer credential to `Bearer` before jwt_authn, so `bearer <token>` is verified at the
#   edge (on public routes it used to pass as anonymous, checked only by the service).
# * Unknown JSON body fields: Envoy's transcoder drops them and forwards the call
#   (envoyproxy/envoy#46623), so a typo loses data silently. The script walks each
#   POST/PATCH body against its message's fields (gateway/body_fields.py; the route's
#   metadata names the message per verb) and answers 400 naming the first unknown one.
# * Conditional reads: every successful JSON GET gets a weak ETag (FNV-1a of the body, as
#   the viewer sees it) and `Cache-Control: private, no-cache` (it is per viewer: only the
#   browser may keep it, and must revalidate); a request whose If-None-Match names it gets
#   304 with no body, so a client polling a profile or a post moves no payload. Streams
#   (text/event-stream) and errors are never buffered here.
EDGE_LUA = r"""
local bit = require("bit")
-- SCHEMAS (message -> field -> nested message or true) is prepended by _edge_lua.

local function fnv1a(data)
  local hash = 2166136261
  for i = 1, #data do
    hash = bit.bxor(hash, string.byte(data, i))
    -- hash * 16777619 (2^24 + 403) modulo 2^32, exact in doubles
    hash = bit.tobit(bit.lshift(hash, 24) + hash * 403)
  end
  return bit.tohex(hash)
end

local function names(header, tag)
  for candidate in string.gmatch(header, "[^,]+") do
    candidate = string.gsub(candidate, "^%s*W/", "")
    candidate = string.gsub(string.gsub(candidate, "^%s+", ""), "%s+$", "")
    if candidate == tag or candidate == "*" then return true end
  end
  return false
end

local ESCAPES = {b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"}

local function skip(s, i)
  return string.find(s, "[^ \t\r\n]", i) or (#s + 1)
end

-- A JSON string starting at s[i] == '"': its text (\u escapes become "?", so such a
-- key never names a field) and the index after it; nil if unterminated.
local function read_string(s, i)
  local out, j = {}, i + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if k == nil then return nil end
    out[#out + 1] = string.sub(s, j, k - 1)
    if string.sub(s, k, k) == '"' then return table.concat(out), k + 1 end
    local e = string.sub(s, k + 1, k + 1)
    if e == "u" then
      out[#out + 1] = "?"
      j = k + 6
    else
      out[#out + 1] = ESCAPES[e] or e
      j = k + 2
    end
  end
end

-- Walks one JSON value at s[i] against `schema` (a message name in SCHEMAS, or nil:
-- anything goes). Returns the index after it; nil if the JSON is malformed (the
-- transcoder then says how); raises {field = path} at the first unknown field.
local function walk(s, i, schema, path)
  i = skip(s, i)
  local c = string.sub(s, i, i)
  if c == "{" then
    local fields = schema and SCHEMAS[schema]
    i = skip(s, i + 1)
    if string.sub(s, i, i) == "}" then return i + 1 end
    while true do
      if string.sub(s, i, i) ~= '"' then return nil end
      local key
      key, i = read_string(s, i)
      if key == nil then return nil end
      local where = (path == "") and key or (path .. "." .. key)
      local nested = nil
      if fields then
        local rule = fields[key]
        if rule == nil then error({field = where}) end
        if rule == false then error({field = where, in_path = true}) end
        if rule ~= true then nested = rule end
      end
      i = skip(s, i)
      if string.sub(s, i, i) ~= ":" then return nil end
      i = walk(s, i + 1, nested, where)
      if i == nil then return nil end
      i = skip(s, i)
      local d = string.sub(s, i, i)
      if d == "}" then return i + 1 end
      if d ~= "," then return nil end
      i = skip(s, i + 1)
    end
  elseif c == "[" then
    i = skip(s, i + 1)
    if string.sub(s, i, i) == "]" then return i + 1 end
    while true do
      i = walk(s, i, schema, path)
      if i == nil then return nil end
      i = skip(s, i)
      local d = string.sub(s, i, i)
      if d == "]" then return i + 1 end
      if d ~= "," then return nil end
      i = i + 1  -- past the comma: else the next element is the comma, for ever
    end
  elseif c == '"' then
    local _, j = read_string(s, i)
    return j
  elseif c == "" then
    return nil
  end
  return string.find(s, "[,%]} \t\r\n]", i) or (#s + 1)
end

-- The first field the body may not carry (nil if none), and whether the path binds it.
local function unknown_field(body, schema)
  local ok, err = pcall(walk, body, 1, schema, "")
  if not ok and type(err) == "table" then return err.field, err.in_path end
  return nil
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local value = headers:get("authorization")
  if value ~= nil then
    local scheme, rest = string.match(value, "^(%S+)%s+(.*)$")
    if scheme ~= nil and scheme ~= "Bearer" and string.lower(scheme) == "bearer" then
      headers:replace("authorization", "Bearer " .. rest)
    end
  end
  local method = headers:get(":method")
  if method == "GET" then
    local meta = handle:streamInfo():dynamicMetadata()
    meta:set("socialmesh.edge", "get", "1")
    local match = headers:get("if-none-match")
    if match ~= nil then meta:set("socialmesh.edge", "if_none_match", match) end
    return
  end
  local bodies = handle:metadata():get("bodies")
  local schema = bodies and bodies[method]
  if schema == nil then return end
  local body = handle:body()
  if body == nil or body:length() == 0 then return end
  local field, in_path = unknown_field(body:getBytes(0, body:length()), schema)
  if in_path then
    handle:respond(
      {[":status"] = "400", [PATH_FIELD_HEADER] = field},
      "invalid request: " .. field .. ": already given in the path; do not repeat it in the body"
    )
  elseif field ~= nil then
    handle:respond(
      {[":status"] = "400", [UNKNOWN_FIELD_HEADER] = field},
      "invalid request: " .. field .. ": no such field in this request"
    )
  end
end

function envoy_on_response(handle)
  local meta = handle:streamInfo():dynamicMetadata():get("socialmesh.edge")
  if meta == nil or meta["get"] ~= "1" then return end
  local headers = handle:headers()
  local ctype = headers:get("content-type") or ""
  if headers:get(":status") ~= "200" or string.sub(ctype, 1, 16) ~= "application/json" then
    return
  end
  if headers:get("etag") ~= nil then return end
  local body = handle:body()
  local data = body:getBytes(0, body:length())
  local tag = '"' .. fnv1a(data) .. "-" .. tostring(#data) .. '"'
  -- body() waited for the whole body: header handles from before it are stale.
  headers = handle:headers()
  headers:replace("etag", "W/" .. tag)
  headers:replace("cache-control", "private, no-cache")
  headers:replace("vary", "Authorization, Accept-Encoding")
  local match = meta["if_none_match"]
  if match ~= nil and names(match, tag) then
    headers:replace(":status", "304")
    headers:remove("content-type")
    headers:remove("content-length")
    body:setBytes("")
  end
end
"""
#: Set by the Lua filter on its 400 for an unknown body field (the local-reply mapper
#: puts it in the BadRequest field violation).
UNKNOWN_FIELD_HEADER = "x-socialmesh-unknown-field"
#: The same for a body field the path already binds (FIELD_IN_PATH).
PATH_FIELD_HEADER = "x-socialmesh-path-field"


def lua_source(schemas: Schemas) -> str:
    """The script with the body schemas (gateway/body_fields.py) and header names it reads."""
    return (
        f"local SCHEMAS = {lua_table(schemas)}\n"
        f'local UNKNOWN_FIELD_HEADER = "{UNKNOWN_FIELD_HEADER}"\n'
        f'local PATH_FIELD_HEADER = "{PATH_FIELD_HEADER}"\n' + EDGE_LUA
    )
