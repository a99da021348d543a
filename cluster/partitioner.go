// Package cluster holds what decides where a key lives: the key partitioner
// and, with ZooKeeper, membership, leader election and partition assignment.
package cluster

// Partition returns the partition of key among n partitions, exactly as
// Kafka's default partitioner picks it for a record key: murmur2 of the key
// bytes, made positive, modulo n. n must be positive. It does not allocate
// and is safe for concurrent use.
func Partition(key string, n int) int32 {
	return int32(uint32(murmur2(key)&0x7fffffff) % uint32(n))
}

// murmur2 is Kafka's Utils.murmur2 (seed 0x9747b28c) over the bytes of s.
func murmur2(s string) int32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	length := len(s)
	h := uint32(seed) ^ uint32(length)
	n4 := length / 4
	for i := 0; i < n4; i++ {
		i4 := i * 4
		k := uint32(s[i4]) | uint32(s[i4+1])<<8 | uint32(s[i4+2])<<16 | uint32(s[i4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length % 4 {
	case 3:
		h ^= uint32(s[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(s[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(s[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}
