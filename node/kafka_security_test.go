package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testutil"
)

// selfSigned returns a TLS certificate for 127.0.0.1 and the path of its
// PEM file (it is its own CA).
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kafka"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, path
}

// A node reaches Kafka over TLS with SASL/SCRAM, consuming and producing
// (Kafka-first ingest) through both.
func TestKafkaTLSAndSCRAM(t *testing.T) {
	cert, caFile := selfSigned(t)
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
	pool.AddCert(mustParse(t, cert.Certificate[0]))
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

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
