package finstream.eshadoop;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Properties;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.commons.logging.Log;
import org.apache.commons.logging.LogFactory;
import org.elasticsearch.hadoop.EsHadoopIllegalArgumentException;
import org.elasticsearch.hadoop.handler.EsHadoopAbortHandlerException;
import org.elasticsearch.hadoop.handler.HandlerResult;
import org.elasticsearch.hadoop.rest.EsHadoopRemoteException;
import org.elasticsearch.hadoop.rest.bulk.handler.BulkWriteErrorHandler;
import org.elasticsearch.hadoop.rest.bulk.handler.BulkWriteFailure;
import org.elasticsearch.hadoop.rest.bulk.handler.DelayableErrorCollector;

/**
 * An ES-Hadoop bulk write error handler ({@code es.write.rest.error.handlers}) that turns a
 * document Elasticsearch refuses for its content (HTTP 400: a mapping conflict, an immense
 * term, a number out of range, too deep a nesting ...) into a dead letter, sent in the same
 * bulk flow: the failed entry is replaced through {@code collector.retry(byte[])} by an
 * {@code index} entry for the dead-letter index. Anything else (429 and 503 left over by
 * ES-Hadoop's own retry handler, other 5xx, 401/403/404/409) is passed on, to the built-in
 * handler that fails the write.
 *
 * <p>Properties ({@code es.write.rest.error.handler.<name>.<property>}; no underscores: ES-Hadoop's
 * Spark SQL source reads an underscore in an option's name as a dot):
 * {@code dead.letter.index} (required), {@code topic} (the Kafka topic of the documents that
 * carry {@code kafka_partition} and {@code kafka_offset}), {@code write.index} (the index of a
 * write whose bulk entries do not name theirs).
 *
 * <p>The dead letter of a refused document: id {@code topic|partition|offset} when the document
 * came from a Kafka record (a bar), else {@code <index>|<document id>} (a prediction); reason =
 * Elasticsearch's reason with its causes; raw = the refused document; refused_index and
 * refused_id name it. A refused dead letter is replaced once by a minimal one (its id, the
 * reason, no document); a refused minimal dead letter aborts the write.
 */
public class DeadLetterHandler extends BulkWriteErrorHandler {
    /** Starts every abort message of this handler: the job reads it as "not worth retrying". */
    public static final String ABORT_MARKER = "[finstream dead letters]";
    public static final String REASON_TAG = "refused by Elasticsearch";
    public static final String MINIMAL_TAG = "dead letter refused by Elasticsearch";
    static final int MAX_PART_CHARS = 1_000;
    static final int MAX_REASON_CHARS = 4_000;

    private static final Log LOG = LogFactory.getLog(DeadLetterHandler.class);
    private final ObjectMapper json = new ObjectMapper();
    private String deadLetterIndex;
    private String topic;
    private String writeIndex;

    @Override
    public void init(Properties properties) {
        deadLetterIndex = text(properties.getProperty("dead.letter.index"));
        topic = text(properties.getProperty("topic"));
        writeIndex = text(properties.getProperty("write.index"));
        if (deadLetterIndex == null) {
            throw new EsHadoopIllegalArgumentException(
                "DeadLetterHandler needs the property es.write.rest.error.handler.<name>.dead.letter.index");
        }
    }

    @Override
    public HandlerResult onError(BulkWriteFailure failure, DelayableErrorCollector<byte[]> collector) throws Exception {
        if (failure.getResponseCode() != 400) {
            return collector.pass("HTTP " + failure.getResponseCode() + " is not a refusal of the document's content");
        }
        String reason = reason(failure.getException());
        Entry entry;
        try {
            entry = Entry.parse(json, readAll(failure.getEntryContents()), writeIndex);
        } catch (IOException | RuntimeException unreadable) {
            throw new EsHadoopAbortHandlerException(ABORT_MARKER + " could not read a refused bulk entry ("
                + unreadable.getMessage() + "); Elasticsearch's reason: " + reason);
        }
        if (deadLetterIndex.equals(entry.index)) {
            if (isMinimal(entry.document)) {
                throw new EsHadoopAbortHandlerException(ABORT_MARKER + " Elasticsearch refused even the minimal dead letter "
                    + entry.id + " in " + entry.index + ": " + reason);
            }
            LOG.warn("dead letter " + entry.id + " refused by Elasticsearch (" + clip(reason, 300)
                + "); writing a minimal one instead");
            return collector.retry(bulkEntry(entry.id, minimalDeadLetter(entry, reason)));
        }
        ObjectNode letter = deadLetter(entry, reason);
        String id = letter.get("doc_id").asText();
        LOG.warn("document " + entry.id + " refused by Elasticsearch in " + entry.index + " (" + clip(reason, 300)
            + "); dead-lettered as " + id + " in " + deadLetterIndex);
        return collector.retry(bulkEntry(id, letter));
    }

    /** A refused document as a dead letter (the fields of the dead-letter index's mapping). */
    ObjectNode deadLetter(Entry entry, String reason) {
        ObjectNode letter = json.createObjectNode();
        JsonNode doc = entry.document;
        JsonNode partition = doc == null ? null : doc.get("kafka_partition");
        JsonNode offset = doc == null ? null : doc.get("kafka_offset");
        boolean fromKafka = topic != null && partition != null && partition.canConvertToInt()
            && offset != null && offset.canConvertToLong();
        letter.put("doc_id", fromKafka ? topic + "|" + partition.asInt() + "|" + offset.asLong()
            : entry.index + "|" + entry.id);
        letter.put("reason", reason);
        letter.putArray("reasons").add(REASON_TAG);
        letter.put("raw", entry.documentText);
        if (fromKafka) {
            letter.put("topic", topic);
            letter.put("partition", partition.asInt());
            letter.put("offset", offset.asLong());
            JsonNode published = doc.get("published_at");
            if (published != null && published.canConvertToLong()) {
                letter.put("published_at", published.asLong());
            }
        }
        letter.put("refused_index", entry.index);
        letter.put("refused_id", entry.id);
        letter.put("indexed_at", System.currentTimeMillis());
        return letter;
    }

    /** What is left of a dead letter Elasticsearch refused: its id and why, nothing of its content. */
    ObjectNode minimalDeadLetter(Entry entry, String reason) {
        ObjectNode letter = json.createObjectNode();
        letter.put("doc_id", entry.id);
        letter.put("reason", "the dead letter itself was refused: " + reason);
        letter.putArray("reasons").add(REASON_TAG).add(MINIMAL_TAG);
        letter.put("refused_index", entry.index);
        letter.put("refused_id", entry.id);
        letter.put("indexed_at", System.currentTimeMillis());
        return letter;
    }

    static boolean isMinimal(JsonNode document) {
        JsonNode reasons = document == null ? null : document.get("reasons");
        if (reasons != null && reasons.isArray()) {
            for (JsonNode reason : reasons) {
                if (MINIMAL_TAG.equals(reason.asText())) {
                    return true;
                }
            }
        }
        return false;
    }

    /** One bulk entry: the action line and the document, each ending with a newline. */
    byte[] bulkEntry(String id, ObjectNode document) throws IOException {
        ObjectNode action = json.createObjectNode();
        action.putObject("index").put("_index", deadLetterIndex).put("_id", id);
        return (json.writeValueAsString(action) + "\n" + json.writeValueAsString(document) + "\n")
            .getBytes(StandardCharsets.UTF_8);
    }

    /**
     * Elasticsearch's reason with its causes: "type: reason; caused by type: reason ...". Each
     * part is clipped (a field's preview can carry the whole refused value).
     */
    static String reason(Throwable error) {
        StringBuilder text = new StringBuilder();
        for (Throwable cause = error; cause != null && cause != cause.getCause(); cause = cause.getCause()) {
            String type = cause instanceof EsHadoopRemoteException ? ((EsHadoopRemoteException) cause).getType() : null;
            String part = (type != null ? type + ": " : "") + cause.getMessage();
            text.append(text.length() == 0 ? "" : "; caused by ").append(clip(part, MAX_PART_CHARS));
        }
        return clip(text.length() == 0 ? "no reason given" : text.toString(), MAX_REASON_CHARS);
    }

    static String clip(String text, int max) {
        return text.length() <= max ? text : text.substring(0, max) + "...";
    }

    private static String text(String value) {
        return value == null || value.trim().isEmpty() ? null : value.trim();
    }

    private static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buffer = new byte[8192];
        for (int n; (n = in.read(buffer)) != -1; ) {
            out.write(buffer, 0, n);
        }
        return out.toByteArray();
    }

    /** A bulk entry: the index and id of its action line, and its document. */
    static final class Entry {
        final String index;
        final String id;
        final String documentText;
        final JsonNode document;

        private Entry(String index, String id, String documentText, JsonNode document) {
            this.index = index;
            this.id = id;
            this.documentText = documentText;
            this.document = document;
        }

        static Entry parse(ObjectMapper json, byte[] bytes, String defaultIndex) throws IOException {
            String text = new String(bytes, StandardCharsets.UTF_8);
            int newline = text.indexOf('\n');
            if (newline < 0) {
                throw new IOException("no action line");
            }
            JsonNode action = json.readTree(text.substring(0, newline));
            JsonNode metadata = action.isObject() && action.size() == 1 ? action.elements().next() : null;
            if (metadata == null || !metadata.isObject()) {
                throw new IOException("not a bulk action line");
            }
            String index = metadata.hasNonNull("_index") ? metadata.get("_index").asText() : defaultIndex;
            String id = metadata.hasNonNull("_id") ? metadata.get("_id").asText() : null;
            if (index == null || id == null) {
                throw new IOException("the action line names no " + (index == null ? "index" : "document id"));
            }
            String documentText = text.substring(newline + 1).trim();
            JsonNode document;
            try {
                document = json.readTree(documentText);
            } catch (IOException notJson) {
                document = null;  // kept as raw text all the same
            }
            return new Entry(index, id, documentText, document != null && document.isObject() ? document : null);
        }
    }
}
