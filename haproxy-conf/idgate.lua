-- idgate HTTP check integration for HAProxy 2.6 (Lua 5.3, no third-party libraries).
--
-- Loaded by the Lua transport's global lines (dropin/global-lua.cfg) with `lua-load`. Registers two actions:
--
--   http-request  lua.idgate-check        ask idgate (GET /auth) whether the request may pass
--   http-response lua.idgate-set-cookies  add the Set-Cookie headers idgate returned on a 200
--
-- What it learns it leaves in variables named as the SPOE agent's (txn.idgate.<name>, docs/reference.md),
-- so that the lines both transports share read either: txn.idgate.status, .user, .backend; and for
-- dropin/frontend-lua.cfg, .set_cookie, .dpop_nonce (added to the client's response) and .allowed.
--
-- The check goes through core.httpclient() to `dst` = the local HAProxy listener named by
-- IDGATE_CHECK_DST (see dropin/global-lua.cfg), never straight to idgate: the 2.6 httpclient has a fixed
-- 5 s connect timeout with 3 retries, so a dead idgate would hold the client for 12-20 s. The
-- listener's backend (be_idgate) has a short connect timeout, an 800 ms answer timeout and
-- health checks, so a dead or slow idgate is a 503/504 from HAProxy itself within about a
-- second, and idgate replicas are balanced.
--
-- The httpclient `timeout` is only a backstop and must stay above be_idgate's budget: when it
-- expires, 2.6 re-sends the check up to 3 more times (4 requests, 4x the timeout).
--
-- Decision table (the README's "The check endpoint"). The answer's headers read below (x-idgate-path,
-- x-idgate-cookie, x-auth-*, location, www-authenticate, set-cookie...) are listed once, with their SPOE
-- counterparts, in docs/reference.md ("Each field of an answer, on both transports").
--   200            replace the request's path by X-Idgate-Path (the canonical path idgate decided on; a 200
--                  without it fails closed), replace the Cookie header by X-Idgate-Cookie when present
--                  (the client's cookies without idgate's own; empty: no Cookie header), inject every
--                  x-auth-* response header into the upstream request (set, not add), remember every
--                  Set-Cookie and the DPoP-Nonce for the client's response; the request continues.
--   302 / 303      reply with that status, Location, every Set-Cookie, Cache-Control: no-store.
--   other 4xx      reply with idgate's status, Content-Type, body, WWW-Authenticate, Allow, DPoP-Nonce, every
--                  Set-Cookie, Cache-Control: no-store.
--   anything else  (no answer, timeout, refused, 5xx, 1xx/2xx/3xx other than the above):
--                  503 "authentication service unavailable". Fail closed.
--
-- Failing closed also covers our own bugs: HAProxy 2.6 lets a request CONTINUE when a Lua
-- action raises an error. So the decision runs under pcall, and the request is let through
-- only if this action set txn.idgate.allowed (the rule after it in dropin/frontend-lua.cfg answers 503
-- otherwise).
--
-- Per request: one req_get_headers(), one small GET over a reused connection (the httpclient's
-- connection to the local listener and be_idgate's connections to idgate are kept alive), a
-- scan of the answer's header names, one read-back per injected identity header. No body is read or sent; the response action only runs
-- when an allowing check returned Set-Cookie.

local CHECK_URL = "http://idgate/auth"   -- the host only names the Host header; `dst` decides where it goes

-- Settings from HAProxy's environment, preset by dropin/global-lua.cfg before it loads this file (their
-- defaults are idgate's, written there from its source): without one, no start.
local function setting(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error(name .. " is not set: load idgate.lua after the lines of idgate's dropin/global-lua.cfg")
  end
  return value
end

-- The listener binds IDGATE_CHECK_DST before HAProxy enters its `chroot` (IDGATE_CHECK_CHROOT, when it
-- has one); the check connects from inside it, so the socket's path there lacks the chroot's prefix.
local function check_dst()
  local dst = setting("IDGATE_CHECK_DST")
  local chroot = (os.getenv("IDGATE_CHECK_CHROOT") or ""):gsub("/+$", "")
  if chroot ~= "" then
    local prefix = "unix@" .. chroot .. "/"
    if dst:sub(1, #prefix) ~= prefix then
      error("IDGATE_CHECK_DST (" .. dst .. ") must be a unix socket inside IDGATE_CHECK_CHROOT (" .. chroot .. ")")
    end
    dst = "unix@/" .. dst:sub(#prefix + 1)
  end
  return dst
end
local CHECK_DST = check_dst()
local CHECK_TIMEOUT_MS = tonumber(setting("IDGATE_CHECK_TIMEOUT_MS"))
if CHECK_TIMEOUT_MS == nil then error("IDGATE_CHECK_TIMEOUT_MS is not a number of milliseconds") end

-- Client request headers forwarded to the check: lower-case name (as HAProxy's HTX stores it)
-- and the name we send. Everything else (Accept-Encoding, Connection, Upgrade, Content-*,
-- X-Auth-*, the client's X-Forwarded-*...) is deliberately left out.
-- DPoP: the proof (RFC 9449) that goes with an `Authorization: DPoP` token, about 1 kB, well inside the
-- httpclient's request buffer (tune.bufsize, 16 kB by default, holds every header sent here).
local FORWARDED = {
  { "authorization", "Authorization" },
  { "dpop", "DPoP" },
  { "accept", "Accept" },
  { "x-requested-with", "X-Requested-With" },
  { "user-agent", "User-Agent" },
  -- A CORS preflight (OPTIONS with both), passed unjudged only where a policy rule says so.
  { "origin", "Origin" },
  { "access-control-request-method", "Access-Control-Request-Method" },
  -- WebDAV's MOVE and COPY write to it: a second path idgate judges.
  { "destination", "Destination" },
}

-- The 503 when the check cannot decide: the very response HAProxy's own fail-closed line answers
-- (its errorfile, idgate-unavailable.http beside this file, written from idgate's source), read once at
-- load (before any chroot). Its Content-Length is left to HAProxy.
local function unavailable_reply()
  local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
  local file = assert(io.open(dir .. "idgate-unavailable.http", "rb"))
  local text = file:read("*a")
  file:close()
  local head, body = text:match("^(.-)\r\n\r\n(.*)$")
  local status = tonumber((head or ""):match("^HTTP/1%.[01] (%d%d%d) "))
  if status ~= 503 then error("idgate-unavailable.http is not a 503 response") end
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+): *([^\r\n]*)") do
    name = name:lower()
    if name ~= "content-length" then headers[name] = { value } end
  end
  return { status = status, headers = headers, body = body }
end

local UNAVAILABLE = unavailable_reply()

-- All values of one header from an HAProxy header table, as a Lua list. Both
-- req_get_headers() and the httpclient response index the values of a header from 0 (so `#`
-- and ipairs() would miss the first one).
local function values_of(tbl, name)
  local v = tbl[name]
  if v == nil then return nil end
  local out = {}
  local i = 0
  while v[i] ~= nil do
    out[#out + 1] = v[i]
    i = i + 1
  end
  return out
end

local function first_of(tbl, name)
  local v = tbl[name]
  if v == nil then return nil end
  return v[0]
end

-- Returns nil to let the request through (identity headers injected), or the reply to send.
local function decide(txn)
  local req = txn.http:req_get_headers()

  -- Header values must be tables for the 2.6 httpclient: a plain string is silently dropped.
  local headers = {}
  local cookies = values_of(req, "cookie")
  if cookies ~= nil then
    headers["Cookie"] = { table.concat(cookies, "; ") }
  end
  for _, h in ipairs(FORWARDED) do
    local v = first_of(req, h[1])
    if v ~= nil then headers[h[2]] = { v } end
  end
  headers["X-Forwarded-Method"] = { txn.f:method() }
  -- A boolean fetch reaches Lua as an integer (0/1; 0 is true in Lua), or as a boolean where
  -- tune.lua.bool-sample-conversion is normal (HAProxy 3.1+, global-lua.cfg).
  local tls = txn.f:ssl_fc()
  headers["X-Forwarded-Proto"] = { (tls == 1 or tls == true) and "https" or "http" }
  headers["X-Forwarded-Host"] = { first_of(req, "host") or "" }
  -- No path (a CONNECT's authority-form target names none): sent without one, the check refuses it. Never
  -- a stand-in such as "/": idgate would judge a request the app does not receive.
  local pathq = txn.f:pathq()
  if pathq ~= nil and pathq:sub(1, 1) == "/" then headers["X-Forwarded-Uri"] = { pathq } end
  headers["X-Forwarded-For"] = { txn.f:src() }
  headers["X-Request-Id"] = { txn.f:unique_id() }

  local hc = core.httpclient()
  local r = hc:get({
    url = CHECK_URL,
    dst = CHECK_DST,
    timeout = CHECK_TIMEOUT_MS,
    headers = headers,
  })
  if r == nil or r.status == nil or r.status == 0 then
    txn:set_var("txn.idgate.status", 0)
    return UNAVAILABLE
  end

  local status = r.status
  local rh = r.headers or {}
  txn:set_var("txn.idgate.status", status)
  local set_cookies = values_of(rh, "set-cookie")

  if status == 200 then
    -- The app gets exactly the path idgate judged, or nothing: a 200 that names none fails closed.
    local path = first_of(rh, "x-idgate-path")
    if path == nil or path:sub(1, 1) ~= "/" then return UNAVAILABLE end
    if path ~= txn.f:path() then
      txn.http:req_set_path(path)
      if txn.f:path() ~= path then
        core.Warning("idgate-check: the decided path does not fit in the request buffer; answering 503")
        return UNAVAILABLE
      end
    end
    -- idgate's own cookies never reach the app (it could leak a session credential into its logs).
    local app_cookies = first_of(rh, "x-idgate-cookie")
    if app_cookies ~= nil then
      txn.http:req_del_header("cookie")
      if app_cookies ~= "" then txn.http:req_set_header("cookie", app_cookies) end
      if (txn.f:req_fhdr("cookie") or "") ~= app_cookies then
        core.Warning("idgate-check: the Cookie header could not be rewritten; answering 503")
        return UNAVAILABLE
      end
    end
    local injected = {}
    for name, values in pairs(rh) do
      -- names arrive lower-cased from HTX
      if name:sub(1, 7) == "x-auth-" then
        -- one value per identity header: idgate sends each once; a repeat is ignored, not merged
        local v = values[0]
        txn.http:req_set_header(name, v)
        injected[name] = v
        if name == "x-auth-user" then
          txn:set_var("txn.idgate.user", v)
        elseif name == "x-auth-backend" then
          txn:set_var("txn.idgate.backend", v)
        end
      end
    end
    -- req_set_header() fails silently (returns nothing) when the request buffer has no room
    -- left (tune.bufsize/maxrewrite): the app would see a partial identity, e.g. a user without
    -- its groups. Read every injected header back; anything missing fails closed.
    for name, v in pairs(injected) do
      if (txn.f:req_fhdr(name) or "") ~= v then
        core.Warning("idgate-check: identity header " .. name .. " does not fit in the request buffer"
          .. " (raise tune.bufsize/tune.maxrewrite); answering 503")
        return UNAVAILABLE
      end
    end
    -- A DPoP nonce for the client's next proofs (RFC 9449 section 8.2): only idgate's answer sets it,
    -- never a header of the client's request or of the app's response.
    local dpop_nonce = first_of(rh, "dpop-nonce")
    if dpop_nonce ~= nil then txn:set_var("txn.idgate.dpop_nonce", dpop_nonce) end
    if set_cookies ~= nil then
      txn:set_priv(set_cookies)
      -- lets the config run lua.idgate-set-cookies only when there is something to add
      txn:set_var("txn.idgate.set_cookie", 1)
    end
    txn:set_var("txn.idgate.allowed", 1)
    return nil
  end

  if status == 302 or status == 303 then
    local location = first_of(rh, "location")
    if location == nil or location == "" then return UNAVAILABLE end
    return {
      status = status,
      headers = {
        ["location"] = { location },
        ["cache-control"] = { "no-store" },
        ["set-cookie"] = set_cookies,
      },
    }
  end

  if status >= 400 and status <= 499 then
    -- A denied user is named in HAProxy's log line too (never in the reply to the client).
    local user = first_of(rh, "x-auth-user")
    if user ~= nil then txn:set_var("txn.idgate.user", user) end
    local out = { ["cache-control"] = { "no-store" }, ["set-cookie"] = set_cookies }
    local body = r.body or ""
    local ctype = first_of(rh, "content-type")
    if ctype ~= nil then
      out["content-type"] = { ctype }
    elseif body ~= "" then
      out["content-type"] = { "application/octet-stream" }
    end
    local www = values_of(rh, "www-authenticate")
    if www ~= nil then out["www-authenticate"] = www end
    -- 405: the methods the route takes (RFC 9110 asks a 405 to name them).
    local allow = first_of(rh, "allow")
    if allow ~= nil then out["allow"] = { allow } end
    -- 401 use_dpop_nonce: the nonce to put in the next proof.
    local dpop_nonce = first_of(rh, "dpop-nonce")
    if dpop_nonce ~= nil then out["dpop-nonce"] = { dpop_nonce } end
    return { status = status, headers = out, body = body }
  end

  return UNAVAILABLE
end

local function check(txn)
  -- A yield (the httpclient waiting) across pcall is fine in Lua 5.3. txn:done() stays outside
  -- the pcall: it ends the Lua execution, which a pcall must not get in the way of.
  local ok, reply = pcall(decide, txn)
  if not ok then
    core.Warning("idgate-check: " .. tostring(reply))
    txn:unset_var("txn.idgate.allowed")
    reply = UNAVAILABLE
  end
  if reply ~= nil then
    txn:done(txn:reply(reply))
  end
end

local function add_set_cookies(txn)
  local cookies = txn:get_priv()
  if type(cookies) ~= "table" then return end
  for _, c in ipairs(cookies) do
    txn.http:res_add_header("Set-Cookie", c)
  end
end

core.register_action("idgate-check", { "http-req" }, check, 0)
core.register_action("idgate-set-cookies", { "http-res" }, add_set_cookies, 0)
