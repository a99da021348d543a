package squall.peers;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import java.io.IOException;

/**
 * One event of the harness's topic: {"key":…,"ts":…,"value":…,"id":…}. A
 * POJO (public fields, no-argument constructor), so that Flink serialises it
 * with its PojoSerializer.
 */
public final class Event {
    public String key;
    public long ts;
    public double value;
    public String id;

    public Event() {}

    /** READER is shared: an ObjectReader is immutable and thread-safe. */
    private static final ObjectReader READER = new ObjectMapper()
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false)
            .readerFor(Event.class);

    /** parse decodes one record value. */
    public static Event parse(byte[] json) throws IOException {
        return READER.readValue(json);
    }
}
