// Package peerkit is what the reference servers under bench/peers share so they present
// the same admin surface as `wsreactor -app echo`: POST /v1/broadcast, GET /healthz and a
// GET /metrics with ws_connections_active, plus the open-file limit raise.
package peerkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"

	"golang.org/x/sys/unix"
)

// errNoData reports a /v1/broadcast body without "data".
var errNoData = errors.New(`"data" is required`)

// BroadcastBody decodes the data of a /v1/broadcast body as wsreactor -app echo does: a
// JSON string's contents, any other JSON value as its raw text.
func BroadcastBody(body []byte) ([]byte, error) {
	var req struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	if len(req.Data) == 0 {
		return nil, errNoData
	}
	if req.Data[0] == '"' {
		var s string
		if err := json.Unmarshal(req.Data, &s); err != nil {
			return nil, err
		}
		return []byte(s), nil
	}
	return req.Data, nil
}

// apiError writes wsreactor's JSON error body with status.
func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "message": msg})
}

// AdminMux returns the admin routes. broadcast writes data to every connection and may
// return a JSON-encodable result for the 202 body (nil for none); active reports the open
// connections. Handlers run on net/http goroutines.
func AdminMux(maxBytes int64, broadcast func(data []byte) (any, error), active func() int64) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/broadcast", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes+1024))
		if err != nil {
			apiError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
			return
		}
		data, err := BroadcastBody(body)
		if err != nil {
			code := "bad_json"
			if errors.Is(err, errNoData) {
				code = "bad_field" // wsreactor's code for a missing field
			}
			apiError(w, http.StatusBadRequest, code, err.Error())
			return
		}
		res, err := broadcast(data)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if res == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = fmt.Fprintf(w, "ws_connections_active %d\n", active())
	})
	return mux
}

// RaiseFileLimit raises the open-file soft limit to the hard limit and logs the outcome
// under name: every socket is a descriptor and the usual soft limit (1024) would cap a run
// far below the host's. A failure is logged, not fatal: the run then shows the cap.
func RaiseFileLimit(name string) {
	var lim unix.Rlimit
	err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	if err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		err = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	if err != nil {
		log.Printf("%s: raising RLIMIT_NOFILE: %v", name, err)
		return
	}
	log.Printf("%s: open-file limit %d", name, lim.Cur)
}
