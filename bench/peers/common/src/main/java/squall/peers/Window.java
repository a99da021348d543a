package squall.peers;

import java.nio.ByteBuffer;

/**
 * The state of one key, as Squall's window keeps it (window/window.go): an
 * event with time ts (epoch ms) falls in bucket b = floor(ts / 1000); newest
 * is the newest bucket ever applied; the window holds the buckets
 * b &gt; newest − 600 (10 minutes of 1-second buckets), each with count, sum,
 * min and max; an event with b ≤ newest − 600 is late and dropped; applying an
 * event with b &gt; newest advances newest and evicts the buckets that fall
 * out. last is the applied event with the greatest time (ties: the latest
 * applied), one per window as Squall's Aggregates.Last. Ids are deduplicated:
 * an event is a duplicate when its non-empty id was applied to a bucket that
 * stays inside the window once this event is applied (so an id whose bucket
 * this very event evicts is accepted again); late is decided before
 * duplicate. Ids are kept as 64-bit hashes with the bucket they were applied
 * to, expiring with that bucket.
 *
 * Only non-empty buckets are stored, ordered by bucket, in parallel primitive
 * arrays (head..head+size). Public fields and a no-argument constructor make
 * it a Flink POJO; {@link #write}/{@link #read} are its compact binary form
 * for Kafka Streams' store.
 */
public final class Window {
    public static final long RESOLUTION_MS = 1000;
    public static final long BUCKETS = 600; // 10 minutes

    public static final int APPLIED = 0, LATE = 1, DUPLICATE = 2;

    public long newest = Long.MIN_VALUE; // newest bucket applied
    public int head, size;
    public long[] bucket = new long[4];
    public int[] count = new int[4];
    public double[] sum = new double[4], min = new double[4], max = new double[4];
    /** The applied event with the greatest time (ties: the latest applied). */
    public long lastTs = Long.MIN_VALUE;
    public double lastValue;
    /** Id hashes (0: empty slot) and their buckets: open addressing, linear probing. */
    public long[] idHash = new long[0];
    public long[] idBucket = new long[0];
    public int idUsed;

    public Window() {}

    /** add applies one event and says whether it was APPLIED, LATE or a DUPLICATE. */
    public int add(long ts, double v, String id) {
        long b = Math.floorDiv(ts, RESOLUTION_MS);
        if (newest != Long.MIN_VALUE && b <= newest - BUCKETS) {
            return LATE;
        }
        long h = 0;
        if (id != null && !id.isEmpty()) {
            h = hash(id);
            if (contains(h, cut(Math.max(b, newest)))) {
                return DUPLICATE;
            }
        }
        if (b > newest) {
            newest = b;
            long cut = newest - BUCKETS;
            while (size > 0 && bucket[head] <= cut) {
                head++;
                size--;
            }
        }
        int i = find(b);
        int at = head + i;
        if (i == size || bucket[at] != b) {
            insertAt(i, b);
            at = head + i;
            count[at] = 1;
            sum[at] = v;
            min[at] = v;
            max[at] = v;
        } else {
            count[at]++;
            sum[at] += v;
            if (v < min[at]) min[at] = v;
            if (v > max[at]) max[at] = v;
        }
        if (ts >= lastTs) {
            lastTs = ts;
            lastValue = v;
        }
        if (h != 0) {
            insertId(h, b);
        }
        return APPLIED;
    }

    private long cut(long nw) {
        return nw - BUCKETS;
    }

    /** find returns the index (from head) of the first bucket ≥ b. */
    private int find(long b) {
        int lo = 0, hi = size;
        if (size > 0 && bucket[head + size - 1] < b) {
            return size; // in order: the common case
        }
        while (lo < hi) {
            int m = (lo + hi) >>> 1;
            if (bucket[head + m] < b) lo = m + 1;
            else hi = m;
        }
        return lo;
    }

    private void insertAt(int i, long b) {
        if (head + size == bucket.length) {
            if (head > 0 && size < bucket.length / 2) {
                shift(-head); // compact to the front
            } else {
                grow(Math.max(4, bucket.length * 2));
            }
        }
        int at = head + i, end = head + size;
        System.arraycopy(bucket, at, bucket, at + 1, end - at);
        System.arraycopy(count, at, count, at + 1, end - at);
        System.arraycopy(sum, at, sum, at + 1, end - at);
        System.arraycopy(min, at, min, at + 1, end - at);
        System.arraycopy(max, at, max, at + 1, end - at);
        bucket[at] = b;
        size++;
    }

    private void shift(int by) {
        System.arraycopy(bucket, head, bucket, head + by, size);
        System.arraycopy(count, head, count, head + by, size);
        System.arraycopy(sum, head, sum, head + by, size);
        System.arraycopy(min, head, min, head + by, size);
        System.arraycopy(max, head, max, head + by, size);
        head += by;
    }

    private void grow(int n) {
        long[] nb = new long[n];
        int[] nc = new int[n];
        double[] ns = new double[n], nmin = new double[n], nmax = new double[n];
        System.arraycopy(bucket, head, nb, 0, size);
        System.arraycopy(count, head, nc, 0, size);
        System.arraycopy(sum, head, ns, 0, size);
        System.arraycopy(min, head, nmin, 0, size);
        System.arraycopy(max, head, nmax, 0, size);
        bucket = nb;
        count = nc;
        sum = ns;
        min = nmin;
        max = nmax;
        head = 0;
    }

    /** hash is a 64-bit FNV-1a of the id's chars, never 0. */
    static long hash(String id) {
        long h = 0xcbf29ce484222325L;
        for (int i = 0; i < id.length(); i++) {
            h ^= id.charAt(i);
            h *= 0x100000001b3L;
        }
        h ^= h >>> 33; // spread the low bits the table indexes by
        h *= 0xff51afd7ed558ccdL;
        h ^= h >>> 33;
        return h == 0 ? 1 : h;
    }

    private boolean contains(long h, long cut) {
        int n = idHash.length;
        if (n == 0) return false;
        for (int i = (int) h & (n - 1); ; i = (i + 1) & (n - 1)) {
            if (idHash[i] == h) return idBucket[i] > cut;
            if (idHash[i] == 0) return false;
        }
    }

    private void insertId(long h, long b) {
        long cut = cut(newest);
        if ((idUsed + 1) * 4 > idHash.length * 3) {
            rebuild(cut);
        }
        int n = idHash.length;
        for (int i = (int) h & (n - 1); ; i = (i + 1) & (n - 1)) {
            if (idHash[i] == 0) {
                idUsed++;
                idHash[i] = h;
                idBucket[i] = b;
                return;
            }
            if (idHash[i] == h || idBucket[i] <= cut) { // the same id expired, or an expired slot
                idHash[i] = h;
                idBucket[i] = b;
                return;
            }
        }
    }

    /** rebuild drops expired ids, doubling the table when live ones need it. */
    private void rebuild(long cut) {
        int live = 0;
        for (int i = 0; i < idHash.length; i++) {
            if (idHash[i] != 0 && idBucket[i] > cut) live++;
        }
        int n = Math.max(8, idHash.length);
        while ((live + 1) * 2 > n) n *= 2;
        long[] oh = idHash, ob = idBucket;
        idHash = new long[n];
        idBucket = new long[n];
        idUsed = 0;
        for (int i = 0; i < oh.length; i++) {
            if (oh[i] != 0 && ob[i] > cut) {
                put(oh[i], ob[i]);
            }
        }
    }

    private void put(long h, long b) {
        int n = idHash.length;
        for (int i = (int) h & (n - 1); ; i = (i + 1) & (n - 1)) {
            if (idHash[i] == 0) {
                idHash[i] = h;
                idBucket[i] = b;
                idUsed++;
                return;
            }
        }
    }

    /** total is the count of the events in the window (every bucket's count). */
    public long total() {
        long t = 0;
        for (int i = head; i < head + size; i++) t += count[i];
        return t;
    }

    /** sum is the sum of the values in the window (every bucket's sum). */
    public double sum() {
        double t = 0;
        for (int i = head; i < head + size; i++) t += sum[i];
        return t;
    }

    /** min is the least value in the window (+Infinity when it is empty). */
    public double min() {
        double m = Double.POSITIVE_INFINITY;
        for (int i = head; i < head + size; i++) m = Math.min(m, min[i]);
        return m;
    }

    /** max is the greatest value in the window (-Infinity when it is empty). */
    public double max() {
        double m = Double.NEGATIVE_INFINITY;
        for (int i = head; i < head + size; i++) m = Math.max(m, max[i]);
        return m;
    }

    /** size in bytes of {@link #write}'s form. */
    public int encodedSize() {
        return HEADER_BYTES + size * BUCKET_BYTES + 4 + liveIds(cut(newest)) * ID_BYTES;
    }

    /** The sizes of write's form: newest, last (ts, value) and the bucket count; a bucket; an id. */
    private static final int HEADER_BYTES = 8 + 8 + 8 + 4, BUCKET_BYTES = 8 + 4 + 8 + 8 + 8, ID_BYTES = 16;

    private int liveIds(long cut) {
        int live = 0;
        for (int i = 0; i < idHash.length; i++) {
            if (idHash[i] != 0 && idBucket[i] > cut) live++;
        }
        return live;
    }

    /** write encodes the window: newest, last, buckets, then the live ids. */
    public byte[] write() {
        long cut = cut(newest);
        int live = liveIds(cut);
        ByteBuffer out = ByteBuffer.allocate(HEADER_BYTES + size * BUCKET_BYTES + 4 + live * ID_BYTES);
        out.putLong(newest).putLong(lastTs).putDouble(lastValue).putInt(size);
        for (int i = head; i < head + size; i++) {
            out.putLong(bucket[i]).putInt(count[i]).putDouble(sum[i]).putDouble(min[i]).putDouble(max[i]);
        }
        out.putInt(live);
        for (int i = 0; i < idHash.length; i++) {
            if (idHash[i] != 0 && idBucket[i] > cut) {
                out.putLong(idHash[i]).putLong(idBucket[i]);
            }
        }
        return out.array();
    }

    /** read decodes what write encoded, with room for one more bucket and id. */
    public static Window read(byte[] b) {
        ByteBuffer in = ByteBuffer.wrap(b);
        Window w = new Window();
        w.newest = in.getLong();
        w.lastTs = in.getLong();
        w.lastValue = in.getDouble();
        int n = in.getInt();
        if (n + 1 > w.bucket.length) w.grow(n + 1 + (n >> 2));
        for (int i = 0; i < n; i++) {
            w.bucket[i] = in.getLong();
            w.count[i] = in.getInt();
            w.sum[i] = in.getDouble();
            w.min[i] = in.getDouble();
            w.max[i] = in.getDouble();
        }
        w.size = n;
        int ids = in.getInt();
        if (ids > 0) {
            int t = 8;
            while ((ids + 1) * 2 > t) t *= 2;
            w.idHash = new long[t];
            w.idBucket = new long[t];
            for (int i = 0; i < ids; i++) {
                w.put(in.getLong(), in.getLong());
            }
        }
        return w;
    }
}
