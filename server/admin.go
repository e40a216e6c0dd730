package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/pprof"

	"github.com/wsreactor/wsreactor/codec"
)

// adminMux returns the admin HTTP routes. Handlers run on net/http goroutines and reach
// connections only through the loop Handler's concurrency-safe methods.
func (s *Server) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.metrics.writePrometheus(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("POST /v1/broadcast", s.handleBroadcast)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// apiError writes DESIGN.md's JSON error body with status.
func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "message": msg})
}

// readBody decodes a JSON request body of at most max bytes into v, answering 413 or 400
// itself; it reports whether the handler may go on.
func readBody(w http.ResponseWriter, r *http.Request, max int64, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			apiError(w, http.StatusRequestEntityTooLarge, "too_large", "body over the message size limit")
			return false
		}
		apiError(w, http.StatusBadRequest, "bad_body", "reading body: "+err.Error())
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		apiError(w, http.StatusBadRequest, "bad_json", err.Error())
		return false
	}
	return true
}

// handleBroadcast is POST /v1/broadcast {"data": <json>}. Under -app echo the data goes to
// every socket as one text frame with no envelope: a JSON string's decoded contents, other
// JSON exactly as it appeared in the body. The frame is encoded once and handed to each
// event loop once.
func (s *Server) handleBroadcast(w http.ResponseWriter, r *http.Request) {
	if s.opts.App != AppEcho {
		apiError(w, http.StatusNotImplemented, "not_implemented", "broadcast under -app pubsub lands with the pub/sub gateway")
		return
	}
	var req struct {
		Data json.RawMessage `json:"data"`
	}
	// The envelope adds a few bytes to the largest message a socket may receive.
	if !readBody(w, r, s.opts.MaxMessageBytes+64, &req) {
		return
	}
	if len(req.Data) == 0 {
		apiError(w, http.StatusBadRequest, "bad_field", `"data" is required`)
		return
	}
	payload := []byte(req.Data)
	if payload[0] == '"' {
		var str string
		if err := json.Unmarshal(payload, &str); err != nil {
			apiError(w, http.StatusBadRequest, "bad_json", err.Error())
			return
		}
		payload = []byte(str)
	}
	if int64(len(payload)) > s.opts.MaxMessageBytes {
		apiError(w, http.StatusRequestEntityTooLarge, "too_large", "data over the message size limit")
		return
	}
	frame := codec.AppendFrame(make([]byte, 0, codec.FrameSize(len(payload))), codec.OpText, true, payload)
	if err := s.handler.Broadcast(frame); err != nil {
		apiError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	w.WriteHeader(http.StatusAccepted)
}
