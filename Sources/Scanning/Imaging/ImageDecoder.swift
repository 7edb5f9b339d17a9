import CPNG
import CTurboJPEG

/// Turns the bytes of a photo into a `GrayImage`: JPEG through libjpeg-turbo (EXIF orientation
/// honoured), PNG through libpng's simplified API. The size is read from the header and checked
/// against `maxPixels` before any pixel is decoded (a small file can claim a huge image).
public struct ImageDecoder: Sendable {
    /// The most pixels a photo may have (width × height as its header states).
    public var maxPixels: Int
    /// Big JPEGs are decoded at 1/2, 1/4 or 1/8 (libjpeg-turbo scales while decoding, cheaply)
    /// while their longer side stays at least this long.
    public var workingLongSide: Int

    public init(maxPixels: Int = 40_000_000, workingLongSide: Int = 2400) {
        self.maxPixels = maxPixels
        self.workingLongSide = workingLongSide
    }

    public enum Kind: String, Sendable { case jpeg, png }

    /// What the first bytes say the file is; nil for anything else (GIF, WebP, text, …).
    public static func sniff(_ bytes: [UInt8]) -> Kind? {
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return .jpeg }
        if bytes.count >= 8, bytes[0..<8].elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        return nil
    }

    public func decode(_ bytes: [UInt8]) throws(ScanError) -> GrayImage {
        guard !bytes.isEmpty else { throw .emptyImage }
        switch Self.sniff(bytes) {
        case .jpeg: return try decodeJPEG(bytes)
        case .png: return try decodePNG(bytes)
        case nil: throw .unsupportedImage("The body is neither a JPEG nor a PNG image.")
        }
    }

    func checkSize(width: Int, height: Int) throws(ScanError) {
        guard width > 0, height > 0 else { throw .corruptImage("The image header gives no size.") }
        guard width.multipliedReportingOverflow(by: height).partialValue <= maxPixels, width <= 1 << 20, height <= 1 << 20 else {
            throw .tooManyPixels(width: width, height: height, limit: maxPixels)
        }
    }

    func decodeJPEG(_ bytes: [UInt8]) throws(ScanError) -> GrayImage {
        guard let handle = tjInitDecompress() else { throw .corruptImage("The JPEG decoder could not start.") }
        defer { tjDestroy(handle) }
        var (width, height, subsampling, colorspace): (Int32, Int32, Int32, Int32) = (0, 0, 0, 0)
        let header = bytes.withUnsafeBufferPointer { buffer in
            tjDecompressHeader3(handle, buffer.baseAddress, UInt(buffer.count), &width, &height, &subsampling, &colorspace)
        }
        guard header == 0 else { throw .corruptImage("The JPEG header cannot be read: \(Self.message(handle)).") }
        try checkSize(width: Int(width), height: Int(height))
        // Print-shop JPEGs (CMYK, YCCK) come from design tools, never from a camera; their
        // conversion to grey depends on conventions (Adobe's inverted inks) this does not guess.
        if colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue) {
            throw .unsupportedImage("The JPEG is in CMYK (a print file), not a photo.")
        }
        // The largest libjpeg-turbo scale (1, 1/2, 1/4, 1/8) that keeps the working size.
        var denominator: Int32 = 1
        while denominator < 8, Int(max(width, height)) / Int(denominator * 2) >= workingLongSide { denominator *= 2 }
        let (outWidth, outHeight) = (Int((width + denominator - 1) / denominator), Int((height + denominator - 1) / denominator))
        var pixels = [UInt8](repeating: 0, count: outWidth * outHeight)
        let status = bytes.withUnsafeBufferPointer { buffer in
            pixels.withUnsafeMutableBufferPointer { out in
                tjDecompress2(
                    handle, buffer.baseAddress, UInt(buffer.count), out.baseAddress, Int32(outWidth), 0, Int32(outHeight), Int32(TJPF_GRAY.rawValue),
                    // A progressive JPEG of more than 500 scans is refused: each scan passes over
                    // the whole image, so a 125 KB file of 3,000 scans took a minute to decode.
                    TJFLAG_NOREALLOC | TJFLAG_LIMITSCANS)
            }
        }
        if status != 0 {
            // Warnings (a damaged or cut-off stream decoded in part) count as corrupt too: a
            // half-grey picture would only produce guesses.
            throw .corruptImage("The JPEG data is damaged or cut off: \(Self.message(handle)).")
        }
        let image = GrayImage(width: outWidth, height: outHeight, pixels: pixels)
        return image.oriented(ExifOrientation.read(jpeg: bytes))
    }

    static func message(_ handle: tjhandle) -> String {
        guard let text = tjGetErrorStr2(handle) else { return "unknown error" }
        return String(cString: text)
    }

    func decodePNG(_ bytes: [UInt8]) throws(ScanError) -> GrayImage {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        defer { png_image_free(&image) }
        let began = bytes.withUnsafeBufferPointer { buffer in
            png_image_begin_read_from_memory(&image, buffer.baseAddress, buffer.count)
        }
        guard began != 0 else { throw .corruptImage("The PNG header cannot be read: \(Self.message(image)).") }
        try checkSize(width: Int(image.width), height: Int(image.height))
        image.format = UInt32(PNG_FORMAT_GRAY)
        let (width, height) = (Int(image.width), Int(image.height))
        var pixels = [UInt8](repeating: 0, count: width * height)
        // Transparent parts are laid on white, as a label on paper.
        var white = png_color(red: 255, green: 255, blue: 255)
        let finished = bytes.withUnsafeBufferPointer { _ in
            pixels.withUnsafeMutableBufferPointer { out in
                png_image_finish_read(&image, &white, out.baseAddress, Int32(width), nil)
            }
        }
        guard finished != 0 else { throw .corruptImage("The PNG data is damaged or cut off: \(Self.message(image)).") }
        return GrayImage(width: width, height: height, pixels: pixels)
    }

    static func message(_ image: png_image) -> String {
        withUnsafeBytes(of: image.message) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return bytes.isEmpty ? "unknown error" : String(decoding: bytes, as: UTF8.self)
        }
    }
}

/// The orientation tag (0x0112) of a JPEG's EXIF block: 1 (as stored) to 8. Anything it cannot
/// read is 1; every offset is checked against the data.
enum ExifOrientation {
    static func read(jpeg bytes: [UInt8]) -> Int {
        var offset = 2
        while offset + 4 <= bytes.count, bytes[offset] == 0xFF {
            let marker = bytes[offset + 1]
            // Start of scan: no more metadata before the pixels.
            if marker == 0xDA || marker == 0xD9 { return 1 }
            let length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            guard length >= 2, offset + 2 + length <= bytes.count else { return 1 }
            if marker == 0xE1, length >= 16, bytes[(offset + 4)..<(offset + 10)].elementsEqual([0x45, 0x78, 0x69, 0x66, 0, 0]) {
                return tiffOrientation(bytes[(offset + 10)..<(offset + 2 + length)]) ?? 1
            }
            offset += 2 + length
        }
        return 1
    }

    static func tiffOrientation(_ tiff: ArraySlice<UInt8>) -> Int? {
        let data = Array(tiff)
        guard data.count >= 8 else { return nil }
        let little: Bool
        switch (data[0], data[1]) {
        case (0x49, 0x49): little = true
        case (0x4D, 0x4D): little = false
        default: return nil
        }
        func u16(_ at: Int) -> Int? {
            guard at >= 0, at + 2 <= data.count else { return nil }
            return little ? Int(data[at]) | Int(data[at + 1]) << 8 : Int(data[at]) << 8 | Int(data[at + 1])
        }
        func u32(_ at: Int) -> Int? {
            guard let low = u16(little ? at : at + 2), let high = u16(little ? at + 2 : at) else { return nil }
            return high << 16 | low
        }
        guard let ifd = u32(4), let count = u16(ifd) else { return nil }
        for entry in 0..<min(count, 256) {
            let at = ifd + 2 + entry * 12
            guard let tag = u16(at) else { return nil }
            if tag == 0x0112, let value = u16(at + 8), (1...8).contains(value) { return value }
        }
        return nil
    }
}
