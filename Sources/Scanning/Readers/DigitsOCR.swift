import CTesseract
import Foundation
import Synchronization

/// A line of text Tesseract read, with its mean confidence (0–1).
public struct OCRLine: Sendable, Equatable {
    public var text: String
    public var confidence: Double
}

/// Tesseract (English data) reading the human-readable line printed under the bars: single-line
/// mode, only the characters a barcode's text has. A Tesseract instance is slow to start and not
/// safe on two threads at once, so instances are kept in a pool and each call takes one.
public final class DigitsOCR: Sendable {
    static let whitelist = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    private let idle = Mutex<[UInt]>([])
    private let dataPath: String?
    /// Whether an instance could be started once (false: no English data; OCR steps are skipped).
    public let available: Bool

    private static let pools = Mutex<[String: DigitsOCR]>([:])

    /// The process's pool for `dataPath` (instances are heavy: every server in a process shares them).
    public static func shared(dataPath: String? = nil) -> DigitsOCR {
        pools.withLock { pools in
            if let pool = pools[dataPath ?? ""] { return pool }
            let pool = DigitsOCR(dataPath: dataPath)
            pools[dataPath ?? ""] = pool
            return pool
        }
    }

    public init(dataPath: String? = nil) {
        self.dataPath = dataPath
        // Tesseract may be built with OpenMP: one thread per call, the pool gives the parallelism.
        setenv("OMP_THREAD_LIMIT", "1", 0)
        if let first = Self.start(dataPath: dataPath) {
            idle.withLock { $0.append(UInt(bitPattern: first)) }
            available = true
        } else {
            available = false
        }
    }

    deinit {
        for handle in idle.withLock({ $0 }) {
            if let pointer = OpaquePointer(bitPattern: handle) { TessBaseAPIDelete(pointer) }
        }
    }

    static func start(dataPath: String?) -> OpaquePointer? {
        guard let handle = TessBaseAPICreate() else { return nil }
        guard TessBaseAPIInit3(handle, dataPath, "eng") == 0 else {
            TessBaseAPIDelete(handle)
            return nil
        }
        TessBaseAPISetVariable(handle, "tessedit_char_whitelist", whitelist)
        TessBaseAPISetVariable(handle, "debug_file", "/dev/null")
        return handle
    }

    /// How Tesseract looks at the image.
    public enum Layout: Sendable {
        /// One line of text (page segmentation mode 7).
        case line
        /// One line, without Tesseract's own layout analysis (mode 13).
        case rawLine
        /// Text anywhere, in any order (mode 11).
        case sparse
    }

    /// The text on `image` read as one line (nil when Tesseract cannot run or reads nothing).
    public func readLine(_ image: GrayImage, layout: Layout = .line) -> OCRLine? {
        guard available, let handle = take() else { return nil }
        defer { give(handle) }
        switch layout {
        case .line: TessBaseAPISetPageSegMode(handle, PSM_SINGLE_LINE)
        case .rawLine: TessBaseAPISetPageSegMode(handle, PSM_RAW_LINE)
        case .sparse: TessBaseAPISetPageSegMode(handle, PSM_SPARSE_TEXT)
        }
        image.pixels.withUnsafeBufferPointer { buffer in
            TessBaseAPISetImage(handle, buffer.baseAddress, Int32(image.width), Int32(image.height), 1, Int32(image.width))
        }
        TessBaseAPISetSourceResolution(handle, 300)
        defer { TessBaseAPIClear(handle) }
        guard let raw = TessBaseAPIGetUTF8Text(handle) else { return nil }
        defer { TessDeleteText(raw) }
        let text = String(cString: raw).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { return nil }
        // The words' own confidences (the mean over the page reads 0 in single-line mode here).
        var confidences: [Int32] = []
        if let words = TessBaseAPIAllWordConfidences(handle) {
            var index = 0
            while words[index] >= 0, index < 256 {
                confidences.append(words[index])
                index += 1
            }
            TessDeleteIntArray(words)
        }
        let mean = confidences.isEmpty ? TessBaseAPIMeanTextConf(handle) : confidences.reduce(0, +) / Int32(confidences.count)
        let confidence = Double(min(100, max(0, mean))) / 100
        return OCRLine(text: text, confidence: confidence)
    }

    private func take() -> OpaquePointer? {
        if let handle = idle.withLock({ $0.popLast() }) { return OpaquePointer(bitPattern: handle) }
        return Self.start(dataPath: dataPath)
    }

    private func give(_ handle: OpaquePointer) {
        idle.withLock { $0.append(UInt(bitPattern: handle)) }
    }
}
