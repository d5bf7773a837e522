-- lookup_wrk.lua — wrk script for bench/lookup.sh: each request asks for a
-- random patient of the loaded set (LOOKUP_PATIENTS, "BP%05d"), from dxhub
-- (GET /api/v1/reports, the facility's key in LOOKUP_TOKEN) or from
-- Orthanc (POST /tools/find at study level, expanded), as LOOKUP_PEER says.
-- The RESULT line comes from api_wrk.lua's done().
dofile(os.getenv("LOOKUP_WRK_DIR") .. "/api_wrk.lua")

local patients = tonumber(os.getenv("LOOKUP_PATIENTS") or "10000")
local peer = os.getenv("LOOKUP_PEER") or "dxhub"
local token = os.getenv("LOOKUP_TOKEN") or ""
-- what the client takes (LOOKUP_ENCODING: "identity", the default, or
-- "gzip", as browsers, curl --compressed and HTTP libraries send)
local encoding = os.getenv("LOOKUP_ENCODING") or "identity"

function init(args)
    math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
    local id = string.format("BP%05d", math.random(0, patients - 1))
    if peer == "orthanc" then
        local body = '{"Level":"Study","Expand":true,"Query":{"PatientID":"' .. id .. '"}}'
        return wrk.format("POST", "/tools/find", {["Content-Type"] = "application/json",
                                                  ["Accept-Encoding"] = encoding}, body)
    end
    return wrk.format("GET", "/api/v1/reports?PatientID=" .. id .. "&scope=local",
                      {["Authorization"] = "Bearer " .. token, ["Accept-Encoding"] = encoding})
end
