package cluster

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Known outputs of Kafka's Utils.murmur2 (clients/src/test/.../UtilsTest.java).
func TestMurmur2KafkaVectors(t *testing.T) {
	cases := []struct {
		in   string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, c := range cases {
		if got := murmur2(c.in); got != c.want {
			t.Errorf("murmur2(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// The partition must be the one Kafka clients pick for the record key; franz-go's
// StickyKeyPartitioner with a nil hasher is Kafka's default murmur2 partitioner.
func TestPartitionMatchesKafkaPartitioner(t *testing.T) {
	p := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		key := fmt.Sprintf("host-%d.metric-%x", rng.IntN(100000), rng.Uint32())
		if i%7 == 0 {
			key = key[:rng.IntN(len(key))+1] // every tail length
		}
		for _, n := range []int{1, 3, 12, 64, 1000} {
			want := p.Partition(&kgo.Record{Key: []byte(key)}, n)
			if got := Partition(key, n); int(got) != want {
				t.Fatalf("Partition(%q, %d) = %d, kafka picks %d", key, n, got, want)
			}
		}
	}
}

func TestPartitionRange(t *testing.T) {
	for _, key := range []string{"", "a", "web-1.cpu", "ünïcødé/ключ"} {
		for _, n := range []int{1, 2, 64, 1 << 20} {
			if p := Partition(key, n); p < 0 || int(p) >= n {
				t.Fatalf("Partition(%q, %d) = %d out of range", key, n, p)
			}
		}
	}
}

func BenchmarkPartition(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		Partition("web-123.cpu.user", 64)
	}
}
