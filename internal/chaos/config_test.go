package chaos

import (
	"testing"
)

func TestConfigFromEnvLog(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want LogMode
		bad  bool
	}{
		{"", LogKafka, false},
		{"kafka", LogKafka, false},
		{"jetstream", LogJetStream, false},
		{"rabbitmq", "", true},
	} {
		t.Setenv(EnvLog, tc.env)
		t.Setenv(EnvSeed, "5")
		t.Setenv(EnvDuration, "")
		cfg, err := ConfigFromEnv()
		if tc.bad {
			if err == nil {
				t.Fatalf("%s=%q: no error", EnvLog, tc.env)
			}
			continue
		}
		if err != nil || cfg.Log != tc.want || cfg.Seed != 5 || !cfg.Short() {
			t.Fatalf("%s=%q: %+v, %v", EnvLog, tc.env, cfg, err)
		}
	}
}

func TestValidateNATSServers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Log, cfg.NATSServers = LogJetStream, 2
	if cfg.Validate() == nil {
		t.Fatal("JetStream mode with 2 NATS servers (3 replicas): no error")
	}
	cfg.Log = LogKafka
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Kafka mode does not use NATSServers: %v", err)
	}
}
