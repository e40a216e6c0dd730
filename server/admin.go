package server

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/pprof"
	"time"
	"unicode/utf8"

	"github.com/wsreactor/wsreactor/fanout"
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
	mux.HandleFunc("POST /v1/publish", s.handleAPI(fanout.KindChannel))
	mux.HandleFunc("POST /v1/send", s.handleAPI(fanout.KindDirect))
	mux.HandleFunc("POST /v1/broadcast", s.handleAPI(fanout.KindBroadcast))
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
	// encoding/json lets invalid UTF-8 through inside strings, and data is copied into
	// text frames verbatim: a client must fail a text frame that is not UTF-8 (RFC 6455
	// §8.1), so one such publish would disconnect every subscriber.
	if !utf8.Valid(body) {
		apiError(w, http.StatusBadRequest, "bad_json", "body is not valid UTF-8")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		if field, ok := wrongFieldType(err); ok {
			apiError(w, http.StatusBadRequest, errBadField, field+" has the wrong type")
			return false
		}
		apiError(w, http.StatusBadRequest, "bad_json", err.Error())
		return false
	}
	return true
}

// decodeJSONString returns the contents of a JSON string literal.
func decodeJSONString(data []byte) (string, bool) {
	var str string
	if err := json.Unmarshal(data, &str); err != nil {
		return "", false
	}
	return str, true
}

// authorized checks -admin-token on /v1/*, answering 401 itself when it fails.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.AdminToken == "" {
		return true
	}
	// The token is compared in constant time.
	if got, ok := bearerToken(r.Header.Get("Authorization")); ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.AdminToken)) == 1 {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="wsreactor"`)
	apiError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
	return false
}

// apiRequest is the body of every /v1 publish endpoint; each uses its own fields.
type apiRequest struct {
	Channel string          `json:"channel"`
	To      string          `json:"to"`
	Data    json.RawMessage `json:"data"`
}

// handleAPI serves POST /v1/publish {"channel","data"}, /v1/send {"to","data"} and
// /v1/broadcast {"data"}: 202 once the message is delivered locally and handed to the
// broker, 400 for a bad body, 413 for an over-large one, 503 when the broker could not take
// it (local sockets have it; other nodes may not, and it is counted as failed). A
// traceparent header travels with the message to the client envelope.
func (s *Server) handleAPI(kind fanout.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(w, r) {
			return
		}
		var req apiRequest
		// The envelope adds a little to the largest message a socket may receive.
		if !readBody(w, r, s.opts.MaxMessageBytes+1024, &req) {
			return
		}
		m := &fanout.Message{Kind: kind, Data: req.Data, Published: time.Now()}
		switch kind {
		case fanout.KindChannel:
			if req.Channel == "" {
				apiError(w, http.StatusBadRequest, errBadField, `"channel" is required`)
				return
			}
			if !fanout.ValidChannel(req.Channel) {
				apiError(w, http.StatusBadRequest, errBadChannel, `"channel" is not a valid channel name`)
				return
			}
			m.Channel = req.Channel
		case fanout.KindDirect:
			if !validIdentity(req.To) {
				apiError(w, http.StatusBadRequest, errBadField, `"to" is missing or not a valid client identity`)
				return
			}
			m.To = req.To
		}
		if len(req.Data) == 0 {
			apiError(w, http.StatusBadRequest, errBadField, `"data" is required`)
			return
		}
		if int64(len(req.Data)) > s.opts.MaxMessageBytes {
			apiError(w, http.StatusRequestEntityTooLarge, errTooLarge, "data over -max-message-bytes")
			return
		}
		if tp := r.Header.Get("traceparent"); validTraceparent(tp) {
			m.Traceparent = tp
		}
		if err := s.broker.Publish(m); err != nil {
			s.metrics.failed.Inc()
			apiError(w, http.StatusServiceUnavailable, "broker_unavailable", "delivered on this node only: "+err.Error())
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}
