package server

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/wsreactor/wsreactor/fanout"
)

// publishQueue is how many client publishes may wait for the broker. A loop never waits:
// when the queue is full the publish is refused with rate_limited and counted as failed.
const publishQueue = 1 << 14

// maxPublishQueueBytes bounds the payload bytes waiting in the publish queue, which the
// count alone does not when messages are large.
const maxPublishQueueBytes = 64 << 20

// startBroker starts the embedded NATS server when asked, connects the broker, and starts
// the interest worker and the publisher. The returned stop undoes all of it.
func (s *Server) startBroker(ctx context.Context) (stop func(), err error) {
	var ns *natsserver.Server
	if s.opts.NATSEmbedded {
		if ns, err = startEmbeddedNATS(s.opts.NATSURL); err != nil {
			return nil, err
		}
		s.log.Info("embedded NATS listening", "url", s.opts.NATSURL)
	}
	// interest exists before the broker: a NATS broker may deliver (Deliver reads the
	// masks) as soon as it subscribes to wsr.all. Its worker starts once the broker is set.
	s.interest = newInterest(nil, s.log)
	switch s.opts.Broker {
	case BrokerNATS:
		b, err := fanout.NewNATS(fanout.NATSConfig{
			URL: s.opts.NATSURL, NodeID: s.opts.NodeID, Routing: s.opts.Routing,
			Deliverer: s, Logger: s.log,
			OnDropped: func(n int) { s.metrics.failed.Add(n) },
		})
		if err != nil {
			if ns != nil {
				ns.Shutdown()
			}
			return nil, err
		}
		s.broker = b
	default:
		s.broker = fanout.NewLocal(s)
	}
	s.interest.broker = s.broker
	// The worker outlives Run's context: it must keep serving acks and interest changes
	// through the drain that context's end starts; stop cancels it.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go s.interest.run(wctx)
	published := make(chan struct{})
	go func() {
		defer close(published)
		for m := range s.pubq {
			if err := s.broker.Publish(m); err != nil {
				s.metrics.failed.Inc()
			}
			s.pubqBytes.Add(-int64(len(m.Data)))
		}
	}()
	return func() {
		close(s.pubq)
		<-published
		cancel()
		<-s.interest.done
		_ = s.broker.Close()
		if ns != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
		}
	}, nil
}

// enqueuePublish hands a client's pub or send to the publisher goroutine, so broker I/O
// never runs on an event loop. It reports false, counting the message as failed, when the
// queue is full; the caller answers the client. Runs on c's loop.
func (s *Server) enqueuePublish(m *fanout.Message) bool {
	n := int64(len(m.Data))
	if s.pubqBytes.Add(n) > maxPublishQueueBytes {
		s.pubqBytes.Add(-n)
		s.metrics.failed.Inc()
		return false
	}
	select {
	case s.pubq <- m:
		return true
	default:
		s.pubqBytes.Add(-n)
		s.metrics.failed.Inc()
		return false
	}
}

// startEmbeddedNATS runs a NATS server in process on rawURL's host and port.
func startEmbeddedNATS(rawURL string) (*natsserver.Server, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("server: nats-url: %w", err)
	}
	host, portStr, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("server: nats-url %q: %w", rawURL, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("server: nats-url port %q: %w", portStr, err)
	}
	ns, err := natsserver.NewServer(&natsserver.Options{Host: host, Port: port, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, fmt.Errorf("server: embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("server: embedded nats did not start on %s", u.Host)
	}
	return ns, nil
}
