package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// wrkResult is what the done() hook of our wrk scripts prints.
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Non2xx     int64   `json:"non2xx"`
	Errors     int64   `json:"errors"`
	P50US      float64 `json:"p50_us"`
	P99US      float64 `json:"p99_us"`
	MaxUS      float64 `json:"max_us"`
}

func (r wrkResult) perSec() float64 {
	return float64(r.Requests-r.Non2xx-r.Errors) / (float64(r.DurationUS) / 1e6)
}

// wrkDone is the Lua hook that reports a run as one JSON line.
const wrkDone = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,"p50_us":%f,"p99_us":%f,"max_us":%f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`

// wrkPost creates leads with bodies shaped like leadInput's.
const wrkPost = `
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
AUTH
local n = 0
request = function()
  n = n + 1
  local id = math.random(1, 1000000000)
  local body = string.format('{"name":"Lead %d","email":"lead.%d@example.com","phone":"+1 415 555 0100","company":"Acme","title":"CTO","source":"web","owner_id":"user_%03d","custom_fields":{"industry":"saas","employees":%d}}',
    id, id, n % 200, 50 + n % 5000)
  return wrk.format("POST", "/v1/leads", nil, body)
end
`

// wrkGet reads the leads whose ids are listed in IDS, at random.
const wrkGet = `
AUTH
local ids = {}
for line in io.lines("IDS") do ids[#ids + 1] = line end
request = function()
  return wrk.format("GET", "/v1/leads/" .. ids[math.random(#ids)])
end
`

// runWrk drives base with script for d with wrk's 2 threads and conns
// connections.
func runWrk(ctx context.Context, dir, name, script, base string, conns int, d time.Duration) (wrkResult, error) {
	path := filepath.Join(dir, name+".lua")
	if err := os.WriteFile(path, []byte(script+wrkDone), 0o600); err != nil {
		return wrkResult{}, err
	}
	cmd := exec.CommandContext(ctx, "wrk", "-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())),
		"--timeout", "10s", "-s", path, base)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %v: %s", name, err, out.String())
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "WRKJSON "); ok {
			var r wrkResult
			return r, json.Unmarshal([]byte(line), &r)
		}
	}
	return wrkResult{}, fmt.Errorf("wrk %s: no summary in its output: %s", name, out.String())
}

// wrkAuth is the Lua line that sends the bearer token (none for the peer).
func wrkAuth(token string) string {
	if token == "" {
		return ""
	}
	return fmt.Sprintf(`wrk.headers["Authorization"] = "Bearer %s"`, token)
}

// seedOver creates n leads through base's POST /v1/leads and returns their
// ids.
func seedOver(ctx context.Context, client *http.Client, base, token string, n int) ([]string, error) {
	ids := make([]string, 0, n)
	for i := range n {
		body, err := leadBody(i)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/leads", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		var created struct {
			ID string `json:"id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&created)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			return nil, fmt.Errorf("seed: status %d, %v", resp.StatusCode, err)
		}
		ids = append(ids, created.ID)
	}
	return ids, nil
}
