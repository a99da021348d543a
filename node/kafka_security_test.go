package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testutil"
)

// A node reaches Kafka over TLS with SASL/SCRAM, consuming and producing
// (Kafka-first ingest) through both.
func TestKafkaTLSAndSCRAM(t *testing.T) {
	cert, caFile, _ := testutil.SelfSignedTLS(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "secure-events"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "squall", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := startNode(t, func(cfg *Config) {
		cfg.KafkaBrokers, cfg.KafkaTopic, cfg.KafkaGroup = c.ListenAddrs()[0], "secure-events", "secure"
		cfg.KafkaTLSCA = caFile
		cfg.KafkaSASLUser, cfg.KafkaSASLPassword, cfg.KafkaSASLMechanism = "squall", "s3cret", "SCRAM-SHA-256"
	})
	// Kafka first: the events go to the topic, then come back through the
	// source actors.
	res, err := n.in.Ingest(context.Background(), "http", []byte(`{"key":"k","ts":1764064800000,"value":3}`), "")
	if err != nil || res.Response.Accepted != 1 {
		t.Fatalf("ingest: %+v %v", res, err)
	}
	// And a record produced by another client.
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DialTLSConfig(&tls.Config{RootCAs: pool}),
		kgo.SASL(scram.Auth{User: "squall", Pass: "s3cret"}.AsSha256Mechanism()), kgo.DefaultProduceTopic("secure-events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte("k"),
		Value: event.AppendJSON(nil, &event.Event{Key: "k", TS: 1764064801000, Value: 4})}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		st, err := n.Get(context.Background(), "k")
		return err == nil && st.Window.Count == 2 && st.Window.Sum == 7
	}, "events not applied through TLS + SCRAM")
}
