// Stand-in for tests; NOT basf2.
//
// C++ replicas of the few Belle II classes that bgcache's basf2 adapter touches, compiled by
// cling (ROOT.gInterpreter.Declare) so that the adapter's tests run against real PyROOT and
// real TClonesArrays where basf2 itself cannot be installed. Names, namespaces, members,
// constructors and member types follow the public basf2 headers:
//
//   vxd/dataobjects/include/VxdID.h            Belle2::VxdID (16-bit packed id, baseType ushort)
//   framework/dataobjects/include/DigitBase.h  Belle2::DigitBase (here on TObject, not on
//                                              RelationsObject: relations are not replicated)
//   pxd/dataobjects/include/PXDDigit.h         Belle2::PXDDigit(VxdID, ushort u, ushort v,
//                                              ushort charge), members m_sensorID, m_uCellID,
//                                              m_vCellID, m_charge (all unsigned short)
//   background/dataobjects/include/BackgroundInfo.h  only the extension name
//   framework/pybasf2/include/PyStoreArray.h   PyStoreArray on a DataStore TClonesArray
//   framework/pybasf2/include/PyStoreObj.h     PyStoreObj (obj(), operator->)
//   framework/pcore/include/ProcHandler.h      the static parallel-processing queries
//
// The DataStore is a map of (durability, name) -> entry, enough for registration and access.
// The bulk filler of newer basf2 releases (PyStoreArray::fillArray, a member template wrapped
// by a Python pythonization) is replicated as Belle2::StandIn::fillArray; basf2.py next to
// this file attaches the pythonization only in the "with fillArray" variant.
#ifndef BGCACHE_BELLE2_STANDIN_H
#define BGCACHE_BELLE2_STANDIN_H

#include <TClass.h>
#include <TClonesArray.h>
#include <TCollection.h>
#include <TObject.h>

#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace Belle2 {

  class VxdID {
  public:
    typedef unsigned short baseType;
    enum {
      LayerBits = 3, LadderBits = 5, SensorBits = 3, SegmentBits = 5,
      Bits = LayerBits + LadderBits + SensorBits + SegmentBits,
      MaxID = (1 << Bits) - 1
    };
    VxdID(baseType id = 0) { m_id.id = id; }
    VxdID(baseType layer, baseType ladder, baseType sensor, baseType segment = 0)
    {
      m_id.parts.layer = layer;
      m_id.parts.ladder = ladder;
      m_id.parts.sensor = sensor;
      m_id.parts.segment = segment;
    }
    VxdID(const VxdID& b): m_id(b.m_id) {}
    VxdID& operator=(const VxdID& b) { m_id = b.m_id; return *this; }
    VxdID& operator=(baseType id) { m_id.id = id; return *this; }
    operator baseType() const { return getID(); }
    bool operator==(const VxdID& b) const { return getID() == b.getID(); }
    baseType getID() const { return m_id.id; }
    baseType getLayerNumber() const { return m_id.parts.layer; }
    baseType getLadderNumber() const { return m_id.parts.ladder; }
    baseType getSensorNumber() const { return m_id.parts.sensor; }
    baseType getSegmentNumber() const { return m_id.parts.segment; }
    void setSegmentNumber(baseType segment) { m_id.parts.segment = segment; }
  private:
    union {
      baseType id: Bits;
      struct {
        baseType segment: SegmentBits;
        baseType sensor: SensorBits;
        baseType ladder: LadderBits;
        baseType layer: LayerBits;
      } parts;
    } m_id;
  };

  class DigitBase : public TObject {
  public:
    enum EAppendStatus { c_DontAppend = 0, c_Append = 1 };
    // pure virtual in basf2; ClassDefInline needs a class it can instantiate
    virtual unsigned int getUniqueChannelID() const { return 0; }
    virtual EAppendStatus addBGDigit(const DigitBase*) { return c_Append; }
    ClassDefInlineOverride(DigitBase, 1)
  };

  class PXDDigit : public DigitBase {
  public:
    PXDDigit(VxdID sensorID, unsigned short uCellID, unsigned short vCellID,
             unsigned short charge):
      m_sensorID(sensorID), m_uCellID(uCellID), m_vCellID(vCellID), m_charge(charge) {}
    PXDDigit(): PXDDigit(0, 0, 0, 0) {}
    VxdID getSensorID() const { return m_sensorID; }
    unsigned short getUCellID() const { return m_uCellID; }
    unsigned short getVCellID() const { return m_vCellID; }
    unsigned short getCharge() const { return m_charge; }
    void setCharge(unsigned short charge) { m_charge = charge; }
    unsigned int getUniqueChannelID() const override
    {
      VxdID sensorID(m_sensorID);
      sensorID.setSegmentNumber(sensorID.getSegmentNumber() << 2);
      return m_vCellID + (m_uCellID << 10) + ((unsigned int)sensorID << 16);
    }
    EAppendStatus addBGDigit(const DigitBase* bg) override
    {
      m_charge += static_cast<const PXDDigit*>(bg)->getCharge();
      return c_DontAppend;
    }
  private:
    unsigned short m_sensorID;
    unsigned short m_uCellID;
    unsigned short m_vCellID;
    unsigned short m_charge;
    ClassDefInlineOverride(PXDDigit, 5)
  };

  class BackgroundInfo : public TObject {
  public:
    const std::string& getExtensionName() const { return m_extensionName; }
    void setExtensionName(const std::string& name) { m_extensionName = name; }
  private:
    std::string m_extensionName = "_beamBG";
    ClassDefInlineOverride(BackgroundInfo, 1)
  };

  class DataStore {
  public:
    enum EDurability { c_Event = 0, c_Persistent = 1 };
    enum EStoreFlags { c_WriteOut = 0, c_DontWriteOut = 1, c_ErrorIfAlreadyRegistered = 2 };
    struct Entry {
      TObject* ptr = nullptr;  // the object, or the TClonesArray of an array
      TClass* objClass = nullptr;
      bool isArray = false;
    };
    /** One registerInDataStore call (what a test inspects). */
    struct Registration {
      std::string name;
      int durability;
      int storeFlags;
    };
    static DataStore& Instance() { static DataStore store; return store; }
    Entry* getEntry(int durability, const std::string& name)
    {
      auto it = m_entries.find({durability, name});
      return it == m_entries.end() ? nullptr : &it->second;
    }
    bool registerEntry(const std::string& name, int durability, TClass* objClass, bool array,
                       int storeFlags)
    {
      m_registrations.push_back({name, durability, storeFlags});
      if (Entry* entry = getEntry(durability, name)) {
        if (storeFlags & c_ErrorIfAlreadyRegistered) return false;
        return entry->isArray == array and entry->objClass == objClass;
      }
      Entry entry;
      entry.objClass = objClass;
      entry.isArray = array;
      entry.ptr = array ? static_cast<TObject*>(new TClonesArray(objClass))
                        : static_cast<TObject*>(objClass->New());
      m_entries[{durability, name}] = entry;
      return true;
    }
    const std::vector<Registration>& registrations() const { return m_registrations; }
    /** Empty the store and forget the registrations (a test helper, not basf2 API). */
    void reset()
    {
      for (auto& item : m_entries) delete item.second.ptr;
      m_entries.clear();
      m_registrations.clear();
    }
  private:
    std::map<std::pair<int, std::string>, Entry> m_entries;
    std::vector<Registration> m_registrations;
  };

  class PyStoreArray {
  public:
    explicit PyStoreArray(const std::string& name, DataStore::EDurability durability = DataStore::c_Event):
      m_name(name), m_durability(durability) {}
    explicit PyStoreArray(TClass* objClass, const std::string& name,
                          DataStore::EDurability durability = DataStore::c_Event):
      m_class(objClass), m_name(name), m_durability(durability) {}
    bool registerInDataStore(const std::string& name = "", DataStore::EStoreFlags storeFlags = DataStore::c_WriteOut)
    {
      if (not name.empty()) m_name = name;
      if (not m_class) {
        // basf2 derives the class from the default name ("PXDDigits" -> Belle2::PXDDigit)
        std::string className = "Belle2::" + m_name.substr(0, m_name.size() - 1);
        m_class = TClass::GetClass(className.c_str());
        if (not m_class) return false;
      }
      return DataStore::Instance().registerEntry(m_name, m_durability, m_class, true, storeFlags);
    }
    std::string getName() const { return m_name; }
    bool isValid() const { return getPtr() != nullptr; }
    operator bool() const { return isValid(); }
    TClass* getClass() const { return m_class ? m_class : (isValid() ? getPtr()->GetClass() : nullptr); }
    TClonesArray* getPtr() const
    {
      DataStore::Entry* entry = DataStore::Instance().getEntry(m_durability, m_name);
      return entry and entry->isArray ? static_cast<TClonesArray*>(entry->ptr) : nullptr;
    }
    int getEntries() const { return isValid() ? getPtr()->GetEntriesFast() : 0; }
    int __len__() const { return getEntries(); }
    TObject* operator[](int i) const { return isValid() ? getPtr()->At(i) : nullptr; }
    TIter __iter__() const { return TIter(getPtr()); }
    TObject* appendNew() { TClonesArray* a = getPtr(); return a->ConstructedAt(a->GetEntriesFast()); }
  private:
    TClass* m_class = nullptr;
    std::string m_name;
    DataStore::EDurability m_durability;
  };

  class PyStoreObj {
  public:
    explicit PyStoreObj(const std::string& name, DataStore::EDurability durability = DataStore::c_Event):
      m_name(name), m_durability(durability) {}
    bool isValid() const
    {
      DataStore::Entry* entry = DataStore::Instance().getEntry(m_durability, m_name);
      return entry and not entry->isArray and entry->ptr;
    }
    operator bool() const { return isValid(); }
    TObject* obj() const
    {
      return isValid() ? DataStore::Instance().getEntry(m_durability, m_name)->ptr : nullptr;
    }
    TObject* operator->() const { return obj(); }
  private:
    std::string m_name;
    DataStore::EDurability m_durability;
  };

  class ProcHandler {
  public:
    static int EvtProcID() { return s_procID(); }
    static int numEventProcesses() { return s_workers(); }
    static bool parallelProcessingUsed() { return s_procID() != -1; }
    static bool isWorkerProcess() { return 0 <= s_procID() and s_procID() < 10000; }
    /** What the queries answer (a test helper, not basf2 API). */
    static void setStandIn(int procID, int workers) { s_procID() = procID; s_workers() = workers; }
  private:
    static int& s_procID() { static int id = -1; return id; }
    static int& s_workers() { static int n = 0; return n; }
  };

  namespace StandIn {
    /** The C++ half of basf2's PyStoreArray::fillArray: appends one object per row,
     *  constructed from the i-th element of each column. */
    template <class T, class... Types>
    void fillArray(PyStoreArray& array, std::size_t length, Types... columns)
    {
      TClonesArray* clones = array.getPtr();
      const int first = clones->GetEntriesFast();
      for (std::size_t i = 0; i < length; ++i) new ((*clones)[first + i]) T(columns[i]...);
    }

    /** The digits of an array, read through PXDDigit's getters into out[4 * i + 0..3]
     *  (sensor id, u, v, charge); returns the number of digits (a test helper). */
    inline long readDigits(const std::string& name, unsigned short* out, long capacity)
    {
      TClonesArray* clones = PyStoreArray(name).getPtr();
      const long n = clones->GetEntriesFast();
      for (long i = 0; i < n and i < capacity; ++i) {
        const PXDDigit* digit = static_cast<const PXDDigit*>(clones->At(i));
        out[4 * i] = digit->getSensorID().getID();
        out[4 * i + 1] = digit->getUCellID();
        out[4 * i + 2] = digit->getVCellID();
        out[4 * i + 3] = digit->getCharge();
      }
      return n;
    }

    /** What BGOverlayInput leaves in a digits array: n digits of one charge on sensor 1.1.1. */
    inline void putDigits(const std::string& name, int n, unsigned short charge)
    {
      TClonesArray* clones = PyStoreArray(name).getPtr();
      clones->Clear();
      for (int i = 0; i < n; ++i) new ((*clones)[i]) PXDDigit(VxdID(1, 1, 1), i, i, charge);
    }
  }
}

#endif
